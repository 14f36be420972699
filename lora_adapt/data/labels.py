"""The label set of a task and its checks (unknown labels, empty classes), naming file and line.

Labels come from ``task.labels`` when given, else from the data: sorted for classification and
relations; for tagging the tag set with ``O`` first, then sorted. Read from the data, the set is the
training split's labels plus any that only validation or test rows carry (a small training sample
can lack a rare label): the head gets a class for each, which never trains, so such rows are scored
as misses, never dropped, and a warning names them. With ``task.labels`` declared, a label outside
it is an error, and a declared label without training rows is a warning.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import DataError
from ..recipe.schema import TaskSpec
from .sources import WHERE

Rows = Sequence[dict[str, Any]]
LABELLED = ("classification", "relation", "tagging")
KINDS = {bool: "a boolean", int: "an integer", float: "a number with a fraction", str: "a string"}


def row_labels(row: dict[str, Any], layout: str) -> list[str]:
    """Every label a row carries (one, several for multi-label, one per token for tagging)."""
    if layout == "tagging":
        return list(row["tags"])
    value = row["label"]
    return list(value) if isinstance(value, list) else [value]


def resolve_labels(splits: Mapping[str, Rows], task: TaskSpec, layout: str) -> tuple[str, ...] | None:
    if layout not in LABELLED:
        return None
    if task.labels is not None:
        return tuple(task.labels)
    seen = {label for rows in splits.values() for row in rows for label in row_labels(row, layout)}
    if layout == "tagging":
        return tuple(["O"] * ("O" in seen) + sorted(seen - {"O"}))
    return tuple(sorted(seen))


def label_counts(rows: Rows, layout: str) -> dict[str, int]:
    counts = Counter(label for row in rows for label in row_labels(row, layout))
    return dict(sorted(counts.items()))


def check_labels(
    splits: Mapping[str, Rows], labels: tuple[str, ...], task: TaskSpec, layout: str
) -> list[str]:
    """Raise on a label outside a declared set; return warnings for labels without training rows."""
    check_known(splits, labels, task, layout)
    return _untrained_labels(splits, labels, task, layout)


def check_known(splits: Mapping[str, Rows], labels: tuple[str, ...], task: TaskSpec, layout: str) -> None:
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


def _untrained_labels(
    splits: Mapping[str, Rows], labels: tuple[str, ...], task: TaskSpec, layout: str
) -> list[str]:
    trained = label_counts(splits.get("train", []), layout)
    missing = [label for label in labels if trained.get(label, 0) == 0]
    if not missing:
        return []
    held_out = {
        name: sum(any(label in missing for label in row_labels(row, layout)) for row in rows)
        for name, rows in splits.items()
        if name != "train"
    }
    where = " and ".join(f"{n} {name} row(s)" for name, n in held_out.items() if n)
    listed = "task.labels lists" if task.labels is not None else "the label set has"
    scored = f": {where} carry them and are scored; the model never learns them, so they count as misses"
    return [f"{listed} {missing} without a training example" + (scored if where else "")]


def check_label_values(rows: Rows, layout: str, task: TaskSpec) -> None:
    """Labels as read, before any conversion: a null label, a fractional number (it may mean regression)
    or labels of different types in one file are errors naming the file, line and value - never coerced
    into classes such as ``'2.5'`` or ``'True'``, never dropped as empty."""
    if layout not in LABELLED:
        return
    kinds = LabelKinds(layout, task)
    for row in rows:
        kinds.see(row)


class LabelKinds:
    """``check_label_values`` one row at a time (the first label's kind is remembered)."""

    def __init__(self, layout: str, task: TaskSpec):
        self.layout, self.task = layout, task
        self.first: tuple[str, str, Any] | None = None  # (kind, where, value) of the file's first label

    def see(self, row: dict[str, Any]) -> None:
        if self.layout not in LABELLED:
            return
        for value in _raw_labels(row, self.layout, self.task):
            kind = _kind(value, row[WHERE])
            if kind is None:  # a list or an object: the column's own type check (formats.py) names it
                continue
            if self.first is None:
                self.first = (kind, row[WHERE], value)
            elif kind != self.first[0]:
                first = self.first
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
