"""What is scored for each task, and how: gold values from canonical rows, the metric set, the
headline metric and the columns of the comparison table. Pure (no model code).

Kinds (one per task type and mode):

| kind       | task                                   | gold / prediction                     | headline            |
|------------|----------------------------------------|---------------------------------------|---------------------|
| single     | classification                         | label                                 | f1_macro            |
| multi      | classification, multi_label            | list of labels                        | f1_macro            |
| relation   | relation_classification                | label (directed, e.g. `X(e1,e2)`)     | f1_macro_official   |
| tagging    | token_classification, head mode        | one tag per word                      | f1 (entity, micro)  |
| entities   | token_classification, generative mode  | list of (type, text) entities         | f1 (entity, micro)  |
| extraction | extraction                             | JSON object                           | field_f1            |
| regression | regression                             | list of floats, one per target        | pearson (mean)      |

A binary single-label or relation task also reports ``f1_positive``, the F1 of its positive class (the label
that is not ``task.negative_label``; without one, the rarer training label), named in ``positive_label``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..recipe.derived import HEADLINE, score_kind, target_names
from ..recipe.schema import TaskSpec
from . import metrics as M
from . import parsing
from . import regression as R

TABLE_COLUMNS = {
    "single": ("accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro"),
    "multi": ("subset_accuracy", "f1_macro", "f1_micro", "f1_samples", "precision_micro", "recall_micro"),
    "relation": ("f1_macro_official", "f1_macro_directed", "accuracy", "f1_macro"),
    "tagging": ("f1", "precision", "recall", "f1_macro", "token_accuracy"),
    "entities": ("f1", "precision", "recall", "f1_macro"),
    "extraction": ("exact_match", "field_f1", "field_precision", "field_recall"),
    "regression": ("pearson", "spearman", "mse", "rmse", "mae"),
}
CONFUSION_KINDS = ("single", "relation")


def task_kind(task: TaskSpec, mode: str) -> str:
    kind = score_kind(task, mode)
    if kind is None:
        raise ValueError(f"task.type {task.type!r} has no task metrics")
    return kind


def spans_from_tags(tokens: Sequence[str], tags: Sequence[str]) -> list[tuple[str, str]]:
    """(type, text) entities of a BIO/IOB2 sentence, decoded as conlleval does (seqeval default mode)."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [(kind, " ".join(tokens[start : end + 1])) for kind, start, end in get_entities(list(tags))]


def entity_type_names(labels: Sequence[str]) -> list[str]:
    """B-PER, I-PER, O -> [PER] (first-seen order)."""
    return list(dict.fromkeys(tag.partition("-")[2] or tag for tag in labels if tag != "O"))


def gold_of(rows: Sequence[dict[str, Any]], kind: str, task: TaskSpec) -> list[Any]:
    if kind in ("single", "relation"):
        return [row["label"] for row in rows]
    if kind == "multi":
        return [sorted(row["label"]) for row in rows]
    if kind == "tagging":
        return [list(row["tags"]) for row in rows]
    if kind == "entities":
        return [spans_from_tags(row["tokens"], row["tags"]) for row in rows]
    if kind == "regression":
        return [list(row["targets"]) for row in rows]
    return [_fields(row["output"], task) for row in rows]


def _fields(output: dict[str, Any], task: TaskSpec) -> dict[str, Any]:
    return {k: output.get(k) for k in task.fields} if task.fields else dict(output)


def parse_answer(text: str, kind: str, labels: Sequence[str], task: TaskSpec) -> Any:
    """A generated answer -> a prediction of ``kind``, or None (invalid)."""
    if kind in ("single", "relation"):
        return parsing.parse_label(text, labels)
    if kind == "multi":
        return parsing.parse_multilabel(text, labels, task.label_separator)
    if kind == "entities":
        return parsing.parse_entities(text, entity_type_names(labels))
    if kind == "extraction":
        obj = parsing.parse_json_object(text)
        return None if obj is None else _fields(obj, task)
    if kind == "regression":
        return R.parse_numbers(text, target_names(task))
    raise ValueError(f"no generative parsing for kind {kind!r}")


def score(
    kind: str,
    gold: Sequence[Any],
    pred: Sequence[Any],
    labels: Sequence[str] | None,
    task: TaskSpec,
    *,
    fallback: Sequence[float] | None = None,
    train_counts: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The full metric dict of one system (``fallback``: regression, the value an invalid answer is scored as;
    ``train_counts``: the training split's label counts, which name a binary task's positive class)."""
    labels = list(labels or ())
    if kind == "regression":
        return R.regression_metrics(
            gold, pred, target_names(task), fallback or [0.0] * len(target_names(task))
        )
    if kind == "single":
        return _with_positive(M.classification_metrics(gold, pred, labels), gold, labels, task, train_counts)
    if kind == "multi":
        return M.multilabel_metrics(gold, pred, labels)
    if kind == "relation":
        return _with_positive(
            M.relation_metrics(gold, pred, labels, task.negative_label), gold, labels, task, train_counts
        )
    if kind == "tagging":
        return M.entity_metrics(gold, pred)
    if kind == "entities":
        return M.entity_set_metrics(gold, pred)
    return M.extraction_metrics(gold, pred, task.fields)


def positive_label(
    labels: Sequence[str],
    negative: str | None,
    gold: Sequence[str],
    train_counts: Mapping[str, int] | None = None,
) -> str | None:
    """A binary task's positive class: the label that is not ``negative``, else the rarer label of the
    training split (``train_counts``: one answer for validation, test and new data alike; without them,
    the rarer gold label) - ties: the later label; None unless there are exactly two labels."""
    if len(labels) != 2:
        return None
    if negative in labels:
        return next(label for label in labels if label != negative)
    counts = (
        {label: train_counts.get(label, 0) for label in labels}
        if train_counts
        else {label: sum(g == label for g in gold) for label in labels}
    )
    return min(reversed(labels), key=lambda label: counts[label])


def _with_positive(
    m: dict[str, Any],
    gold: Sequence[str],
    labels: list[str],
    task: TaskSpec,
    train_counts: Mapping[str, int] | None,
) -> dict[str, Any]:
    positive = positive_label(labels, task.negative_label, gold, train_counts)
    if positive is not None:
        m["positive_label"] = positive
        m["f1_positive"] = m["per_class"][positive]["f1"]
    return m


def table_columns(kind: str, metrics: dict[str, Any] | None = None) -> list[str]:
    """The comparison table's metric columns: the kind's, plus ``f1_positive`` for binary tasks and the
    per-target Pearson/MSE of a regression with several targets."""
    columns = list(TABLE_COLUMNS[kind])
    metrics = metrics or {}
    if "f1_positive" in metrics:
        columns.insert(columns.index("f1_macro") + 1, "f1_positive")
    if kind == "regression" and len(metrics.get("per_target") or {}) > 1:
        names = list(metrics["per_target"])
        pearson, mse = [f"pearson_{n}" for n in names], [f"mse_{n}" for n in names]
        columns = ["pearson", *pearson, "spearman", "mse", *mse, "mae"]
    return columns


def headline(kind: str, metrics: dict[str, Any]) -> float | None:
    return metrics.get(HEADLINE[kind])
