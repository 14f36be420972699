"""Running a classifier-head model (or its frozen base) over a tokenized split.

Head-mode datasets are aligned row for row with ``prepared.raw`` (the data module truncates long
rows instead of dropping them), so prediction ``i`` belongs to raw row ``i``. For tagging, the
``labels`` column marks each word's first sub-word (other positions are -100); words cut off by
truncation get the tag ``O`` so every gold word is scored.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from ..recipe.derived import MULTI_LABEL_LOGIT

MODEL_COLUMNS = ("input_ids", "attention_mask", "token_type_ids")


def batches(
    dataset, tokenizer, batch_size: int, device
) -> Iterator[tuple[dict[str, torch.Tensor], list[Any]]]:
    """Padded model inputs and the raw ``labels`` values of each batch, in dataset order."""
    columns = [c for c in MODEL_COLUMNS if c in dataset.column_names]
    for start in range(0, len(dataset), batch_size):
        chunk = dataset[start : start + batch_size]
        features = [{c: chunk[c][i] for c in columns} for i in range(len(chunk["input_ids"]))]
        inputs = {k: v.to(device) for k, v in pad_right(tokenizer, features).items()}
        yield inputs, list(chunk["labels"]) if "labels" in chunk else [None] * len(features)


def pad_right(tokenizer, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """A head model's batch, padded on the right whatever the tokenizer's own side (Llama, Mistral and
    Gemma tokenizers pad on the left): token positions then match the unpadded ids, as decoding expects."""
    return tokenizer.pad(features, padding=True, return_tensors="pt", padding_side="right")


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def no_adapter(model, base_only: bool):
    """The adapter switched off (``base_only``) or left on."""
    return model.disable_adapter() if base_only and hasattr(model, "disable_adapter") else nullcontext()


@torch.no_grad()
def head_outputs(model, dataset, tokenizer, *, batch_size: int) -> list[np.ndarray]:
    """Per-row logits: [num_labels] for sequence heads, [positions, num_labels] for token heads
    (only the positions whose ``labels`` are not -100, i.e. one per kept word)."""
    model.eval()
    out: list[np.ndarray] = []
    for inputs, labels in batches(dataset, tokenizer, batch_size, model_device(model)):
        logits = model(**inputs).logits.float().cpu().numpy()
        for i, label in enumerate(labels):
            out.append(_word_rows(logits[i], label) if logits.ndim == 3 else logits[i])
    return out


@torch.no_grad()
def frozen_features(model, dataset, tokenizer, *, batch_size: int, token_level: bool) -> list[np.ndarray]:
    """Last-layer hidden states of the base model with the adapter switched off.

    Sequence level: the attention-masked mean over tokens (one vector per row). Token level: the
    vectors at each word's first sub-word (one row per kept word)."""
    model.eval()
    out: list[np.ndarray] = []
    with no_adapter(model, True):
        for inputs, labels in batches(dataset, tokenizer, batch_size, model_device(model)):
            hidden = model(**inputs, output_hidden_states=True).hidden_states[-1].float()
            if token_level:
                array = hidden.cpu().numpy()
                out.extend(_word_rows(array[i], label) for i, label in enumerate(labels))
                continue
            out.extend(mean_pooled(hidden, inputs["attention_mask"]).cpu().numpy())
    return out


def mean_pooled(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[rows, positions, width] hidden states -> [rows, width]: the mean over each row's real tokens."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


def _word_rows(matrix: np.ndarray, label: Sequence[int] | None) -> np.ndarray:
    if label is None:
        return matrix
    positions = [i for i, x in enumerate(label) if x != -100 and i < len(matrix)]
    return matrix[positions]


def decode_single(logits: Sequence[np.ndarray], labels: Sequence[str]) -> list[str]:
    return [labels[int(np.argmax(row))] for row in logits]


def decode_multi(logits: Sequence[np.ndarray], labels: Sequence[str]) -> list[list[str]]:
    return [[labels[i] for i, x in enumerate(row) if x > MULTI_LABEL_LOGIT] for row in logits]


def decode_regression(outputs: Sequence[np.ndarray], scaling: dict[str, Any] | None) -> list[list[float]]:
    """Head outputs -> target values in the data's units: the head's scaling (``task.targets.scaling`` in the
    manifest / ``AdapterInfo.target_scaling``: ``{"method", "mean", "std"}``) undone; None = raw outputs."""
    from ..data.targets import unscale

    return [unscale(np.atleast_1d(np.asarray(row, dtype=float)), scaling) for row in outputs]


def decode_tags(
    logits: Sequence[np.ndarray], labels: Sequence[str], lengths: Sequence[int]
) -> list[list[str]]:
    """Tag per word; words beyond the model's (truncated) input are tagged ``O``."""
    out = []
    for row, n in zip(logits, lengths, strict=True):
        tags = [labels[int(i)] for i in np.argmax(row, axis=-1)] if len(row) else []
        out.append((tags + ["O"] * n)[:n])
    return out
