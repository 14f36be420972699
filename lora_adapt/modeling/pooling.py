"""How a sequence-classification head reads the encoder: the vector the classifier sees.

transformers' BERT-family classifiers (BERT, MiniLM, BioBERT, PubMedBERT, LegalBERT, ...) feed the
``[CLS]`` hidden state through the checkpoint's pooler (dense + tanh). Sentence-embedding checkpoints
such as all-MiniLM-L6-v2 were trained for *mean* pooling instead, and their ``[CLS]`` state carries
little: with the stock head a LoRA run on BANKING77 reached macro-F1 0.22 where mean pooling reached
0.69 with the same data, steps and seed (benchmarks/results/tasks_cpu.md). Relation classifiers read
the states at the two entity markers (Baldini Soares et al., 2019, "entity start").

Poolings (``task.pooling``):

- ``model``: the architecture's own head, unchanged (BERT: pooled ``[CLS]``; decoders: last token).
- ``cls``: the raw ``[CLS]`` hidden state, without the pooler's dense + tanh.
- ``mean``: the mean of the hidden states over the attention mask (padding never counts).
- ``entity_start``: the states at the first token of ``<e1>`` and of ``<e2>``, concatenated (the
  classifier becomes ``2 x hidden -> labels``). A row whose marker was truncated away falls back to
  ``[CLS]`` for that entity.
- ``auto``: a model merged by lora-adapt keeps the pooling it was trained with; otherwise
  ``entity_start`` for relation classification, then the pooling of a sentence-transformers
  checkpoint (``1_Pooling/config.json``: mean or cls), then ``model``.

Our poolings replace the backbone's ``pooler`` module, so the model class, peft's module names and the
saved adapter stay as transformers makes them. They apply to BERT-family encoders (a backbone with a
``pooler`` the model calls); other architectures get a clear error and keep ``model``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelLoadError

CONFIG_KEY = "lora_adapt_pooling"  # written into a merged model's config.json
ENTITY_MARKERS = ("<e1>", "<e2>")


def resolve_pooling(
    requested: str,
    task_type: str,
    model_dir: str | Path | None,
    config: Any = None,
    revision: str | None = None,
    tokenizer: Any = None,
) -> str:
    """The concrete pooling for ``requested`` (``auto`` resolved as the module docstring says; a relation
    task whose tokenizer cannot tell ``<e1>`` from ``<e2>`` falls back to ``mean``)."""
    if requested != "auto":
        return requested
    merged = getattr(config, CONFIG_KEY, None) if config is not None else None
    if merged:
        return str(merged)
    if task_type == "relation_classification":
        return "entity_start" if tokenizer is None or _markers_apart(tokenizer) else "mean"
    return sentence_transformers_pooling(model_dir, revision) or "model"


def _markers_apart(tokenizer) -> bool:
    try:
        marker_ids(tokenizer)
    except ModelLoadError:
        return False
    return True


def sentence_transformers_pooling(model_dir: str | Path | None, revision: str | None = None) -> str | None:
    """``mean`` or ``cls`` when ``model_dir`` (a folder or Hub id) is a sentence-transformers checkpoint
    that pools that way (its ``1_Pooling/config.json``)."""
    if model_dir is None:
        return None
    local = Path(model_dir) / "1_Pooling" / "config.json"
    path: str | Path | None = local if local.is_file() else None
    if path is None and not Path(model_dir).exists():
        from transformers.utils import cached_file

        try:  # a Hub id: the file from the cache (or the Hub when online); absent is normal
            path = cached_file(
                str(model_dir),
                "1_Pooling/config.json",
                revision=revision,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
            )
        except Exception:
            path = None
    if path is None:
        return None
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    modes = [
        name
        for name, key in (("mean", "pooling_mode_mean_tokens"), ("cls", "pooling_mode_cls_token"))
        if config.get(key)
    ]
    return modes[0] if len(modes) == 1 else None


class Pooler(nn.Module):
    """Stands in for a BERT-style ``pooler``: ``forward(sequence_output) -> pooled``.

    The backbone calls its pooler with the hidden states only, so a forward pre-hook on the backbone
    hands this module the batch's ``attention_mask`` and ``input_ids`` first."""

    def __init__(self, mode: str, markers: tuple[torch.Tensor, ...] = ()):
        super().__init__()
        self.mode = mode
        self.markers = markers
        self._batch: dict[str, torch.Tensor | None] = {}

    def remember(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self._batch = {"input_ids": ids, "attention_mask": kwargs.get("attention_mask")}

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.mode == "cls":
            return hidden[:, 0]
        if self.mode == "mean":
            mask = self._batch.get("attention_mask")
            if mask is None:
                return hidden.mean(dim=1)
            weights = mask.to(hidden.dtype).unsqueeze(-1)
            return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        ids = self._batch.get("input_ids")
        if ids is None:
            raise RuntimeError("entity_start pooling needs input_ids (inputs_embeds alone carry no markers)")
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return torch.cat(
            [hidden[rows, first_match(ids, marker.to(ids.device))] for marker in self.markers], dim=-1
        )

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


def first_match(ids: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """Per row, the position where ``pattern`` first starts in ``ids`` (0, the [CLS] slot, when absent)."""
    width = pattern.numel()
    if ids.shape[1] < width:
        return torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)
    hits = (ids.unfold(1, width, 1) == pattern).all(dim=-1)
    found = hits.any(dim=1)
    return torch.where(found, hits.to(torch.int8).argmax(dim=1), torch.zeros_like(found, dtype=torch.long))


def marker_ids(tokenizer) -> tuple[torch.Tensor, ...]:
    """The token ids ``<e1>`` and ``<e2>`` become in running text (e.g. ``< e ##1 >``)."""
    out = []
    for marker in ENTITY_MARKERS:
        ids = tokenizer(marker, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ModelLoadError(
                f"the tokenizer turns the entity marker {marker!r} into no tokens",
                hint="use task.pooling: mean (or model) with this tokenizer",
            )
        out.append(torch.tensor(ids, dtype=torch.long))
    if torch.equal(out[0], out[1]):
        raise ModelLoadError(
            "the tokenizer cannot tell the entity markers <e1> and <e2> apart",
            hint="use task.pooling: mean (or model) with this tokenizer",
        )
    return tuple(out)


def apply_pooling(model, pooling: str, tokenizer=None) -> None:
    """Make ``model`` (a *ForSequenceClassification) classify from ``pooling``; ``model`` leaves it as is."""
    if pooling == "model":
        return
    backbone = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if backbone is None or not isinstance(getattr(backbone, "pooler", None), nn.Module):
        name = type(model).__name__
        raise ModelLoadError(
            f"task.pooling '{pooling}' needs a BERT-style encoder with a pooler; {name} has none",
            hint="set task.pooling: model to use this architecture's own head (decoders pool the last token)",
        )
    markers: tuple[torch.Tensor, ...] = ()
    if pooling == "entity_start":
        if tokenizer is None:
            raise ModelLoadError("entity_start pooling needs the tokenizer to find the entity markers")
        markers = marker_ids(tokenizer)
        _widen_classifier(model, len(markers))
    pooler = Pooler(pooling, markers)
    backbone.pooler = pooler
    backbone.register_forward_pre_hook(pooler.remember, with_kwargs=True)


def _widen_classifier(model, parts: int) -> None:
    old = getattr(model, "classifier", None)
    if not isinstance(old, nn.Linear):
        raise ModelLoadError(
            f"entity_start pooling expects a linear `classifier`; {type(model).__name__} has "
            f"{type(old).__name__}",
            hint="set task.pooling: mean or model",
        )
    new = nn.Linear(
        old.in_features * parts, old.out_features, device=old.weight.device, dtype=old.weight.dtype
    )
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        new.weight.normal_(0.0, std)
        new.bias.zero_()
    model.classifier = new
