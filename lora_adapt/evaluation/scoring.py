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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..recipe.schema import TaskSpec
from . import metrics as M
from . import parsing

HEADLINE = {
    "single": "f1_macro",
    "multi": "f1_macro",
    "relation": "f1_macro_official",
    "tagging": "f1",
    "entities": "f1",
    "extraction": "field_f1",
}
TABLE_COLUMNS = {
    "single": ("accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro"),
    "multi": ("subset_accuracy", "f1_macro", "f1_micro", "f1_samples", "precision_micro", "recall_micro"),
    "relation": ("f1_macro_official", "f1_macro_directed", "accuracy", "f1_macro"),
    "tagging": ("f1", "precision", "recall", "f1_macro", "token_accuracy"),
    "entities": ("f1", "precision", "recall", "f1_macro"),
    "extraction": ("exact_match", "field_f1", "field_precision", "field_recall"),
}
CONFUSION_KINDS = ("single", "relation")


def task_kind(task: TaskSpec, mode: str) -> str:
    if task.type == "classification":
        return "multi" if task.multi_label else "single"
    if task.type == "relation_classification":
        return "relation"
    if task.type == "token_classification":
        return "tagging" if mode == "head" else "entities"
    if task.type == "extraction":
        return "extraction"
    raise ValueError(f"task.type {task.type!r} has no task metrics")


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
    raise ValueError(f"no generative parsing for kind {kind!r}")


def score(
    kind: str, gold: Sequence[Any], pred: Sequence[Any], labels: Sequence[str] | None, task: TaskSpec
) -> dict[str, Any]:
    """The full metric dict of one system."""
    labels = list(labels or ())
    if kind == "single":
        return M.classification_metrics(gold, pred, labels)
    if kind == "multi":
        return M.multilabel_metrics(gold, pred, labels)
    if kind == "relation":
        return M.relation_metrics(gold, pred, labels, task.negative_label)
    if kind == "tagging":
        return M.entity_metrics(gold, pred)
    if kind == "entities":
        return M.entity_set_metrics(gold, pred)
    return M.extraction_metrics(gold, pred, task.fields)


def headline(kind: str, metrics: dict[str, Any]) -> float | None:
    return metrics.get(HEADLINE[kind])
