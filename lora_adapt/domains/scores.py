"""Scoring predictions made through an :class:`AdapterSet` with `eval`'s own scorer
(``evaluation.scoring``), so a number from the server, `predict` or `eval-matrix` means what `eval`'s means."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .tasks import TaskKind

SCORING_KIND = {
    "single": "single",
    "relation": "relation",
    "multi": "multi",
    "tagging": "tagging",
    "labels": "multi",
    "entities": "entities",
    "extraction": "extraction",
    "regression": "regression",
    "number": "regression",
}
"""Prediction kind -> the scorer's kind (generative single-label answers: see :func:`scoring_kind`)."""
BATCH = 32


def scoring_kind(kind: TaskKind) -> str:
    if kind.name == "answer":
        return "relation" if kind.prompting.task.type == "relation_classification" else "single"
    return SCORING_KIND[kind.name]


def headline_metric(kind: TaskKind) -> str:
    from ..evaluation.scoring import HEADLINE

    return HEADLINE[scoring_kind(kind)]


def prediction_value(kind: TaskKind, result: dict[str, Any]) -> Any:
    """What the scorer compares with the gold value, from one prediction dict (None = invalid answer)."""
    name = kind.name
    if name in ("single", "relation", "answer"):
        return result.get("label")
    if name in ("multi", "labels"):
        labels = result.get("labels")
        return None if labels is None else sorted(labels)
    if name == "tagging":
        return result["tags"]
    if name == "entities":
        entities = result.get("entities")
        return None if entities is None else [(e["type"], e["text"]) for e in entities]
    if name == "extraction":
        return result.get("fields")
    if name in ("regression", "number"):
        values = result.get("values")
        return None if values is None else [values[target] for target in kind.labels]
    raise ValueError(f"{name} predictions are not scored")


def score_predictions(
    kind: TaskKind, rows: Sequence[dict[str, Any]], results: Sequence[dict[str, Any]], task
) -> dict[str, Any]:
    """The metric dict of `eval` for ``results`` (one per canonical row with gold values)."""
    from ..evaluation.scoring import gold_of, score

    which = scoring_kind(kind)
    predictions = [prediction_value(kind, r) for r in results]
    fallback = getattr(kind, "training_mean", None)  # regression: what an unreadable number is scored as
    return score(which, gold_of(rows, which, task), predictions, kind.labels, task, fallback=fallback)


def score_task_rows(aset, name: str, rows: Sequence[dict[str, Any]], task) -> dict[str, Any]:
    """Predict ``rows`` with adapter ``name`` of ``aset`` and score them."""
    results: list[dict[str, Any]] = []
    for start in range(0, len(rows), BATCH):
        results += aset.run([(name, row) for row in rows[start : start + BATCH]])
    return score_predictions(aset[name].kind, rows, results, task)
