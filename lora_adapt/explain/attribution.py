"""Integrated Gradients (Captum) through an adapted head model, merged from sub-words into words.

The attribution is taken at the word-embedding layer (``LayerIntegratedGradients``): the path runs from
a baseline input - every ordinary token replaced by the padding token, special tokens ([CLS], [SEP]) and
relation entity markers (``<e1>``...) kept, so the head still finds what it pools - to the real input, with
the real attention mask. What is attributed is the head's raw output for one class (its logit) or one
regression target (in the target's units: a standardised head's output is multiplied back by the
target's standard deviation, and read with its training mean added). By IG's completeness property the attributions sum to
``score - baseline_score``, up to the convergence ``delta`` (that residual, computed in float64).

Convergence is checked, not assumed: a confident model's output often jumps within a small stretch of the
path (a step, not a slope), and a few integration points miss it - the attributions then sum to a fraction
of the output gap and rank the wrong words. ``explain`` starts at ``steps`` and doubles them (up to
``max_steps``) until ``|delta| <= tolerance * |score - baseline_score|``; an explanation still above it is
marked ``converged = False`` for the caller to set aside or flag.

Sub-word attributions are summed into words (the tokenizer's ``word_ids``); a word's text is the span of
the original text its sub-words cover. Needs a fast tokenizer (offsets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import UsageError

MARKER = re.compile(r"</?e[12]>")


@dataclass(frozen=True)
class Word:
    text: str
    score: float
    part: int = 0  # 0: the text, 1: the second text of a pair


@dataclass
class Explanation:
    """One input's attribution toward one output (a class, or a regression target)."""

    text: str
    text_b: str | None
    target: str
    prediction: str
    score: float  # the attributed output for the input
    baseline_score: float  # ... and for the baseline input
    delta: float  # convergence delta: sum(attributions) - (score - baseline_score), in float64
    words: list[Word] = field(default_factory=list)
    steps: int = 0  # the integration steps used
    converged: bool = True  # |delta| within the tolerance of |score - baseline_score|

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "text_b": self.text_b,
            "target": self.target,
            "prediction": self.prediction,
            "score": self.score,
            "baseline_score": self.baseline_score,
            "delta": self.delta,
            "steps": self.steps,
            "converged": self.converged,
            "words": [[w.text, w.score, w.part] for w in self.words],
        }


@dataclass(frozen=True)
class Head:
    """What the model's outputs are: class labels, or regression targets with the scaling to undo."""

    kind: str  # "classification" | "regression"
    names: tuple[str, ...]
    scaling: dict[str, Any] | None = None

    def unit(self, index: int) -> float:
        """Factor from the head's output to the reported unit (a target's std for a standardised head)."""
        return float(self.scaling["std"][index]) if self.scaling and self._standardized else 1.0

    def offset(self, index: int) -> float:
        """What is added to a scaled output to read it in the target's units (its training mean)."""
        return float(self.scaling["mean"][index]) if self.scaling and self._standardized else 0.0

    @property
    def _standardized(self) -> bool:
        return bool(
            self.kind == "regression" and self.scaling and self.scaling.get("method") == "standardize"
        )


BATCH = 64  # interpolated inputs per forward pass: memory stays bounded however many steps are used
GAP_FLOOR = 1e-2  # outputs this close to the baseline's need no relative accuracy (raw head units)


class Attributor:
    """Integrated Gradients for one model; ``explain`` one input toward one output, with ``steps`` doubled
    up to ``max_steps`` until the convergence delta is within ``tolerance`` of the output gap."""

    def __init__(
        self,
        model,
        tokenizer,
        head: Head,
        *,
        steps: int = 50,
        max_steps: int | None = None,
        tolerance: float = 0.05,
        max_length: int = 512,
    ):
        if not getattr(tokenizer, "is_fast", False):
            raise UsageError(
                "explanations need a fast tokenizer (offsets map sub-words to words)",
                hint="use a model whose tokenizer has a tokenizer.json",
            )
        from captum.attr import LayerIntegratedGradients

        self.model, self.tokenizer, self.head = model.eval(), tokenizer, head
        self.steps, self.max_length = steps, max_length
        self.max_steps, self.tolerance = max(steps, max_steps or steps), tolerance
        self.device = next(model.parameters()).device
        self._ig = LayerIntegratedGradients(self._forward, model.get_input_embeddings())

    def _forward(self, input_ids, attention_mask, token_type_ids=None):
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits.float()

    def encode(self, text: str, text_b: str | None):
        args = (text, text_b) if text_b is not None else (text,)
        return self.tokenizer(
            *args,
            truncation=True,
            max_length=self.max_length,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            return_tensors="pt",
        )

    def outputs(self, text: str, text_b: str | None = None) -> torch.Tensor:
        """The head's raw outputs for one input (logits, or scaled regression values)."""
        enc = self.encode(text, text_b)
        with torch.no_grad():
            return self._forward(*self._model_args(enc))[0].cpu()

    def predict_index(self, text: str, text_b: str | None = None) -> int:
        return int(self.outputs(text, text_b).argmax())

    def explain(self, text: str, text_b: str | None = None, target: int | None = None) -> Explanation:
        """Attributions of output ``target`` (default: the predicted class, or the first target)."""
        enc = self.encode(text, text_b)
        args = self._model_args(enc)
        with torch.no_grad():
            out = self._forward(*args)[0].cpu()
        if target is None:
            target = int(out.argmax()) if self.head.kind == "classification" else 0
        baseline = self._baseline_ids(enc, text, text_b)
        with torch.no_grad():
            base_out = self._forward(baseline, *args[1:])[0, target].item()
        allowed = self.tolerance * max(abs(float(out[target]) - base_out), GAP_FLOOR)
        steps = self.steps
        while True:
            attributions = self._ig.attribute(
                inputs=args[0],
                baselines=baseline,
                target=target,
                additional_forward_args=args[1:],
                n_steps=steps,
                internal_batch_size=min(steps, BATCH),
            )
            # the residual of what is reported (float64 over the per-token sums, against the outputs above);
            # Captum's own delta comes from its batched float32 forwards and can differ from it
            residual = float(attributions.detach().sum(dim=-1)[0].double().sum()) - (
                float(out[target]) - base_out
            )
            converged = abs(residual) <= allowed
            if converged or steps >= self.max_steps:
                break
            steps = min(2 * steps, self.max_steps)
        unit, offset = self.head.unit(target), self.head.offset(target)
        per_token = (attributions.sum(dim=-1)[0].detach().cpu() * unit).tolist()
        return Explanation(
            text=text,
            text_b=text_b,
            target=self.head.names[target],
            prediction=self._prediction(out),
            score=float(out[target]) * unit + offset,
            baseline_score=base_out * unit + offset,
            delta=residual * unit,
            words=_words(enc, per_token, text, text_b),
            steps=steps,
            converged=converged,
        )

    def _model_args(self, enc) -> tuple:
        ids = enc["input_ids"].to(self.device)
        mask = enc["attention_mask"].to(self.device)
        if "token_type_ids" in enc and text_pair(enc):
            return ids, mask, enc["token_type_ids"].to(self.device)
        return ids, mask

    def _baseline_ids(self, enc, text: str, text_b: str | None) -> torch.Tensor:
        """Padding everywhere but special tokens and entity-marker tokens."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        keep = enc["special_tokens_mask"][0].bool() | _marker_tokens(enc, text, text_b)
        ids = enc["input_ids"][0]
        return torch.where(keep, ids, torch.full_like(ids, pad)).unsqueeze(0).to(self.device)

    def _prediction(self, out: torch.Tensor) -> str:
        if self.head.kind == "classification":
            return self.head.names[int(out.argmax())]
        from ..evaluation.prediction import decode_regression

        values = decode_regression([out.numpy()], self.head.scaling)[0]
        return ", ".join(f"{n} {v:.3f}" for n, v in zip(self.head.names, values, strict=True))


def text_pair(enc) -> bool:
    return any(s == 1 for s in enc.sequence_ids(0))


def _marker_tokens(enc, text: str, text_b: str | None) -> torch.Tensor:
    spans = [[(m.start(), m.end()) for m in MARKER.finditer(t or "")] for t in (text, text_b)]
    keep = [
        seq is not None and any(s < end and e > start for start, end in spans[seq])
        for seq, (s, e) in zip(enc.sequence_ids(0), enc["offset_mapping"][0].tolist(), strict=True)
    ]
    return torch.tensor(keep, dtype=torch.bool)


def _words(enc, per_token: list[float], text: str, text_b: str | None) -> list[Word]:
    """Sub-word attributions summed per word (markers and special tokens left out)."""
    texts = (text, text_b or "")
    markers = _marker_tokens(enc, text, text_b).tolist()
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (seq, word) in enumerate(zip(enc.sequence_ids(0), enc.word_ids(0), strict=True)):
        if seq is None or word is None or markers[i]:
            continue
        groups.setdefault((seq, word), []).append(i)
    offsets = enc["offset_mapping"][0].tolist()
    out = []
    for (seq, _), tokens in groups.items():
        start, end = offsets[tokens[0]][0], offsets[tokens[-1]][1]
        out.append(Word(texts[seq][start:end], sum(per_token[i] for i in tokens), seq))
    return out
