"""The label set of a task and its checks (unknown labels, empty classes), naming file and line.

Labels come from ``task.labels`` when given, else from the training split: sorted for
classification and relations; for tagging the tag set with ``O`` first, then sorted.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..errors import DataError
from ..recipe.schema import TaskSpec
from .sources import WHERE

Rows = list[dict[str, Any]]
LABELLED = ("classification", "relation", "tagging")
KINDS = {bool: "a boolean", int: "an integer", float: "a number with a fraction", str: "a string"}


def row_labels(row: dict[str, Any], layout: str) -> list[str]:
    """Every label a row carries (one, several for multi-label, one per token for tagging)."""
    if layout == "tagging":
        return list(row["tags"])
    value = row["label"]
    return list(value) if isinstance(value, list) else [value]


def resolve_labels(train: Rows, task: TaskSpec, layout: str) -> tuple[str, ...] | None:
    if layout not in LABELLED:
        return None
    if task.labels is not None:
        return tuple(task.labels)
    seen = {label for row in train for label in row_labels(row, layout)}
    if layout == "tagging":
        return tuple(["O"] * ("O" in seen) + sorted(seen - {"O"}))
    return tuple(sorted(seen))


def label_counts(rows: Rows, layout: str) -> dict[str, int]:
    counts = Counter(label for row in rows for label in row_labels(row, layout))
    return dict(sorted(counts.items()))


def check_labels(splits: dict[str, Rows], labels: tuple[str, ...], task: TaskSpec, layout: str) -> list[str]:
    """Raise on a label outside the set or a listed class without training rows; return warnings."""
    check_known(splits, labels, task, layout)
    return _empty_classes(splits.get("train", []), labels, task, layout)


def check_known(splits: dict[str, Rows], labels: tuple[str, ...], task: TaskSpec, layout: str) -> None:
    """Raise on the first label outside ``labels``, naming its file and line."""
    known = set(labels)
    origin = "task.labels" if task.labels is not None else "the training split's labels"
    for name, rows in splits.items():
        for row in rows:
            unknown = [label for label in row_labels(row, layout) if label not in known]
            if unknown:
                raise DataError(
                    f"{row[WHERE]}: unknown label {unknown[0]!r} in the {name} split (not in {origin})",
                    hint="add it to task.labels and give the training split examples of it, or fix/remove the row",
                )


def _empty_classes(train: Rows, labels: tuple[str, ...], task: TaskSpec, layout: str) -> list[str]:
    counts = label_counts(train, layout)
    empty = [label for label in labels if counts.get(label, 0) == 0]
    if not empty:
        return []
    message = f"task.labels lists {empty} but the training split has no example of them"
    if layout == "tagging":  # a rare I- tag can be absent from a small sample; training still works
        return [message]
    raise DataError(message, hint="remove them from task.labels, or add training rows for them")


def check_label_values(rows: Rows, layout: str, task: TaskSpec) -> None:
    """Labels as read, before any conversion: a null label, a fractional number (it may mean regression)
    or labels of different types in one file are errors naming the file, line and value - never coerced
    into classes such as ``'2.5'`` or ``'True'``, never dropped as empty."""
    if layout not in LABELLED:
        return
    first: tuple[str, str, Any] | None = None  # (kind, where, value) of the file's first label
    for row in rows:
        for value in _raw_labels(row, layout, task):
            kind = _kind(value, row[WHERE])
            if kind is None:  # a list or an object: the column's own type check (formats.py) names it
                continue
            if first is None:
                first = (kind, row[WHERE], value)
            elif kind != first[0]:
                raise DataError(
                    f"{row[WHERE]}: label {value!r} is {kind}, but the file's first label ({first[1]}: "
                    f"{first[2]!r}) is {first[0]}; the labels of one file must all have one type",
                    hint='write every label as a string (e.g. "1", "yes"), or every one as an integer id',
                )


def _raw_labels(row: dict[str, Any], layout: str, task: TaskSpec) -> list[Any]:
    key = "tags" if layout == "tagging" else "label"
    if key not in row:  # a row without the column: reading it says so ("this row has no ['label']")
        return []
    value = row[key]
    if layout == "tagging" and isinstance(value, str):
        return value.split()
    if isinstance(value, list) and (layout == "tagging" or task.multi_label):
        return value
    return [value]


def _kind(value: Any, where: str) -> str | None:
    if value is None:
        raise DataError(
            f"{where}: the label is null",
            hint="give every row a label, or remove the row (rows without a label are not dropped silently)",
        )
    if isinstance(value, float):
        raise DataError(
            f"{where}: label {value!r} is a number with a fraction; classification labels are names or "
            "integer ids (a fractional target means regression)",
            hint="write the labels as strings or integer ids, or set task.type: regression to predict the number",
        )
    return KINDS.get(type(value))
