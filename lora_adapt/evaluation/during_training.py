"""Task scores on the validation split *during* training, with the scorer the final evaluation uses, so
early stopping, learning curves and sweeps watch the same numbers the report shows.

- Head mode: ``head_compute_metrics`` is the Trainer's ``compute_metrics``: the evaluation loop's logits
  are decoded as evaluation decodes them and scored against the cleaned validation rows.
- Generative tasks: ``ValidationScorer`` (a TrainerCallback) generates answers for a seeded sample of
  ``evaluation.validation_max_samples`` validation rows at each evaluation and adds the scores to the
  evaluation's metrics (``eval_<name>``) before early stopping and the best-checkpoint choice read them.

Both report the scalar scores of ``recipe.derived.TASK_METRICS`` for the task's kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from transformers import TrainerCallback

from ..recipe.derived import TASK_METRICS
from . import prediction, systems
from .scoring import gold_of, score
from .systems import EvalContext, seeded_sample

Scores = dict[str, float]


def task_scores(kind: str, metrics: dict[str, Any]) -> Scores:
    """The scalar scores of a full metric dict (``score``'s output), as watched during training."""
    return {name: float(metrics[name]) for name in TASK_METRICS[kind] if metrics.get(name) is not None}


def head_compute_metrics(
    kind: str,
    task,
    labels: Sequence[str] | None,
    rows: Sequence[dict[str, Any]],
    scaling: dict[str, Any] | None = None,
    train_counts: dict[str, int] | None = None,
) -> Callable[[Any], Scores]:
    """``compute_metrics`` for a head trainer whose eval dataset is the tokenized form of ``rows``
    (aligned row for row). Another dataset (of a different length) gets no task scores. ``scaling``: a
    regression head's target scaling (undone before scoring, as the final evaluation does)."""
    gold = gold_of(list(rows), kind, task)
    lengths = [len(row["tokens"]) for row in rows] if kind == "tagging" else []

    def compute(prediction_output) -> Scores:
        logits = prediction_output.predictions
        logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits)
        if len(logits) != len(gold):
            return {}
        if kind == "regression":
            predicted: list = prediction.decode_regression(list(logits), scaling)
        else:
            predicted = _decode(kind, logits, np.asarray(prediction_output.label_ids), labels or (), lengths)
        return task_scores(kind, score(kind, gold, predicted, labels, task, train_counts=train_counts))

    return compute


def _decode(kind: str, logits: np.ndarray, label_ids: np.ndarray, labels: Sequence[str], lengths) -> list:
    if kind == "tagging":  # one row per kept word: the positions whose label is not -100
        rows = [row[ids != -100] for row, ids in zip(logits, label_ids, strict=True)]
        return prediction.decode_tags(rows, labels, lengths)
    if kind == "multi":
        return [sorted(p) for p in prediction.decode_multi(list(logits), labels)]
    return prediction.decode_single(list(logits), labels)


class ValidationScorer(TrainerCallback):
    """Generative tasks: score a seeded sample of validation rows at each evaluation (see module doc)."""

    def __init__(self, ctx: EvalContext, echo: Callable[[str], None] = print):
        self.ctx = ctx
        self.gold = gold_of(ctx.rows, ctx.kind, ctx.task)
        self.echo = echo

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if metrics is None or model is None or "eval_loss" not in metrics:
            return  # an evaluation of another split (loss before/after), not the validation step
        scores = {f"eval_{k}": v for k, v in self.scores(model).items()}
        metrics.update(scores)
        if state.log_history and "eval_loss" in state.log_history[-1]:
            state.log_history[-1].update({k: round(v, 6) for k, v in scores.items()})
        shown = "  ".join(f"{k} {v:.4f}" for k, v in scores.items() if k.removeprefix("eval_") in _SHOWN)
        self.echo(f"eval   {state.global_step}: {len(self.gold)} validation rows generated, {shown}")

    def scores(self, model) -> Scores:
        ctx, labels = self.ctx, list(self.ctx.labels or ())
        predicted = systems.generate(model, ctx).predictions
        metrics = score(
            ctx.kind,
            self.gold,
            predicted,
            labels,
            ctx.task,
            fallback=ctx.fallback,
            train_counts=ctx.train_counts,
        )
        return task_scores(ctx.kind, metrics)


_SHOWN = ("accuracy", "f1_macro", "f1_macro_official", "f1", "field_f1", "exact_match")


def validation_scorer(recipe, kind: str, tokenizer, prepared, echo=print) -> ValidationScorer | None:
    """A :class:`ValidationScorer` over a seeded sample of the validation rows, or None without any."""
    rows = list(prepared.raw.get("validation") or [])
    if not rows:
        return None
    keep = seeded_sample(len(rows), recipe.evaluation.validation_max_samples, recipe.training.seed)
    if keep is not None:
        rows = [rows[i] for i in keep]
    ctx = EvalContext(
        **EvalContext.stats_of(
            prepared
        ),  # regression: invalid answers score as the training mean, as in eval
        task=recipe.task,
        data=recipe.data,
        evaluation=recipe.evaluation,
        kind=kind,
        mode="generative",
        labels=prepared.labels,
        tokenizer=tokenizer,
        rows=rows,
        seed=recipe.training.seed,
        available=len(prepared.raw.get("validation") or []),
    )
    return ValidationScorer(ctx, echo)
