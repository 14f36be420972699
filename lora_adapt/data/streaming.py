"""One pass over the data files, and cleaning by row numbers: what preparation keeps in memory per row is a
few bytes (its split, an empty flag, a 128-bit hash of its content and, when splits are stratified, its
label), never the row itself.

``Collector`` reads each split's rows one at a time (data/sources.py streams JSON lines and csv/tsv), maps
them to canonical columns with the checks of data/formats.py (a split's first row decides the layout, the
renaming and the columns every row needs, as before), normalises them (data/cleaning.py) and appends each
as JSON text to an Arrow file (data/arrow_rows.py). ``clean`` then applies data/cleaning.py's rules to row
numbers: empty rows by flag, duplicates within a split and across splits by hash (xxh3-128 of the row's
identity, ``cleaning.row_key``), the caps and the training sample with the same seeded draws as on rows;
so the kept rows, their order and every count equal those of cleaning the rows themselves."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..recipe.schema import DataSpec, TaskSpec
from . import cleaning
from .arrow_rows import RowStore, RowWriter
from .formats import canonical_converter, check_columns, rename_columns, rename_row, renames, rows_layout
from .labels import LabelKinds
from .sources import WHERE
from .splits import sample_rows, split_of

STRATIFIED = ("classification", "relation")
ROW_JSON = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(..., ensure_ascii=False), one encoder


class Canonical:
    """``preparation._canonical`` one row at a time for one split: its first row checks the mapped column
    names and the required columns, and decides the layout (unless given), the renaming and whether every
    row must be a sentence pair."""

    def __init__(self, spec: DataSpec, task: TaskSpec, source: str, layout: str | None):
        self.spec, self.task, self.source, self.layout = spec, task, source, layout
        self._convert: Callable[[dict], dict] | None = None

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        if self._convert is None:
            self._renaming = renames(self.spec, row)
            row = rename_columns([row], self.spec, self.source)[0]
            self.layout = self.layout or rows_layout(self.spec, self.task, row)
            check_columns([row], self.layout, self.spec, self.source)
            self._kinds = LabelKinds(self.layout, self.task)
            self._convert = canonical_converter(row, self.layout, self.task)
        elif self._renaming:
            row = rename_row(row, self.spec)
        self._kinds.see(row)
        assert self._convert is not None
        return self._convert(row)


class Collector:
    """Canonical rows -> normalised JSON rows in ``<folder>/rows.arrow`` and per-row cleaning facts."""

    def __init__(self, spec: DataSpec, task: TaskSpec, counts: dict[str, int], folder: Path):
        import xxhash

        self.spec, self.task, self.counts = spec, task, counts
        self.rules = cleaning.active_rules(spec.cleaning)
        self.writer = RowWriter(folder / "rows.arrow")
        self.members: dict[str, list[int]] = {}
        self.empty = bytearray()
        self.hashes = bytearray()
        self.read_labels: list[str | None] = []  # as read (carving strata)
        self.clean_labels: list[str | None] = []  # normalised (training-sample strata)
        self.layout: str | None = None
        self._hash = xxhash.xxh3_128_digest
        self._stratified: bool | None = None
        self._drop_empty, self._deduplicate = spec.cleaning.drop_empty, spec.cleaning.deduplicate

    def stratified(self) -> bool:
        return bool(self.spec.split.stratify and self.layout in STRATIFIED and not self.task.multi_label)

    def add(self, name: str, row: dict[str, Any]) -> None:
        members = self.members.get(name)
        if members is None:
            members = self.members[name] = []
        if self._stratified is None:  # the layout is known from the first row on
            assert self.layout is not None
            self._stratified = self.stratified()
        norm = cleaning.normalize_row(row, self.rules, self.counts)
        if self._stratified:
            self.read_labels.append(str(row["label"]).strip())
            self.clean_labels.append(str(norm["label"]).strip())
        self.empty.append(self._drop_empty and cleaning.is_empty(norm, self.layout))
        try:  # a row of strings (the common case): both texts with each string quoted once
            text, key = cleaning.row_json_and_key(norm)
        except TypeError:
            text, key = _row_json(norm), None
        if self._deduplicate:
            self.hashes += self._hash((key if key is not None else cleaning.row_key(norm)).encode())
        members.append(self.writer.add(text))

    def add_split(self, name: str, rows: Iterable[dict[str, Any]]) -> None:
        self.members.setdefault(name, [])
        for row in rows:
            self.add(name, row)

    def close(self):
        return self.writer.close()

    def strata(self, numbers: list[int], clean: bool) -> list[str] | None:
        if not self.stratified():
            return None
        labels = self.clean_labels if clean else self.read_labels
        return [labels[i] for i in numbers]  # type: ignore[misc]


def _row_json(row: dict[str, Any]) -> str:
    """``json.dumps(row, ensure_ascii=False)``; a value JSON cannot write is the user's data error."""
    try:
        return ROW_JSON(row)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"{row.get(WHERE, '?')}: a value is not plain data ({exc})",
            hint="canonical columns hold text, numbers, lists and objects",
        ) from None


def no_rows(source: str) -> DataError:
    return DataError(
        f"{source}: the training file has no rows",
        hint="check that it is the right file (.jsonl: one JSON object per line; .csv: a header line, then rows)",
    )


def collect_train(
    rows: Iterable[dict], source: str, spec: DataSpec, task: TaskSpec, found: Collector
) -> None:
    canonical = Canonical(spec, task, source, None)
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        raise no_rows(source)
    row = canonical(first)
    found.layout = canonical.layout
    found.add("train", row)
    for row in rows:
        found.add("train", canonical(row))


def collect_by_column(
    rows: Iterable[dict], source: str, spec: DataSpec, task: TaskSpec, found: Collector
) -> None:
    """``data.split.column``: rows before the first training row wait for it (it decides the layout)."""
    column = spec.split.column
    assert column is not None
    waiting: list[tuple[str, dict]] = []
    rows = iter(rows)
    for row in rows:
        waiting.append((split_of(row, column, source), row))
        if waiting[-1][0] == "train":
            break
    else:
        raise DataError(f"{source}: no row has {column} = train", hint="check data.split.column")
    train = Canonical(spec, task, f"{source} (train rows)", None)
    first = train(waiting.pop()[1])
    found.layout = train.layout
    canon = {"train": train}
    for name, row in waiting:
        canon.setdefault(name, Canonical(spec, task, f"{source} ({name} rows)", found.layout))
        found.add(name, canon[name](row))
    found.add("train", first)
    for row in rows:
        name = split_of(row, column, source)
        canon.setdefault(name, Canonical(spec, task, f"{source} ({name} rows)", found.layout))
        found.add(name, canon[name](row))


def clean(
    splits: dict[str, list[int]], rows: Collector, dropped: dict[str, dict[str, int]]
) -> dict[str, list[int]]:
    """``preparation._clean``'s per-split rules on row numbers (normalisation happened as rows were read).
    The flags and hashes are read in place, and duplicates are found by one sort of a split's hashes (a
    sorted search across splits): the set operations of numpy (``unique``, ``isin``) sort copies of
    copies, several times the hashes' size, which stayed in the process's resident memory."""
    rules = rows.spec.cleaning
    empty = np.frombuffer(rows.empty, dtype=bool)
    hashes = np.frombuffer(rows.hashes, dtype="S16") if rules.deduplicate else None
    out: dict[str, np.ndarray] = {}
    for name, numbers in splits.items():
        kept = np.asarray(numbers, dtype=np.int64)
        if rules.drop_empty:
            before = len(kept)
            kept = kept[~empty[kept]] if len(kept) else kept
            dropped["empty"][name] = before - len(kept)
        if hashes is not None:
            before = len(kept)
            if name != "test" and len(kept):
                kept = kept[_first_of_each(hashes[kept])]
            dropped["duplicate"][name] = before - len(kept)
        out[name] = kept
    if hashes is not None:
        cross = _drop_cross_split(out, hashes)
        dropped["cross_split"] = {name: cross[name] for name in out}
    return {name: kept.tolist() for name, kept in out.items()}


def _first_of_each(keys: np.ndarray) -> np.ndarray:
    """The positions of each key's first occurrence, in order (``np.unique(keys, return_index=True)``)."""
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    first = np.empty(len(keys), dtype=bool)
    first[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    return np.sort(order[first])


def _drop_cross_split(splits: dict[str, np.ndarray], hashes: np.ndarray) -> dict[str, int]:
    """``cleaning.drop_cross_split`` by hash."""
    dropped = {}
    protected = np.empty(0, dtype="S16")  # sorted
    for name in ("test", "validation", "train"):
        kept = splits.get(name)
        if kept is None:
            continue
        keys = hashes[kept]
        keep = ~_among(keys, protected)
        splits[name] = kept[keep]
        dropped[name] = int(len(kept) - keep.sum())
        if name != "train":  # nothing comes after the training split
            protected = np.sort(np.concatenate([protected, keys[keep]]))
    return dropped


def _among(keys: np.ndarray, protected: np.ndarray) -> np.ndarray:
    """Which of ``keys`` are in the sorted ``protected`` (``np.isin``)."""
    if not len(protected) or not len(keys):
        return np.zeros(len(keys), dtype=bool)
    at = np.searchsorted(protected, keys)
    np.minimum(at, len(protected) - 1, out=at)
    return protected[at] == keys


def sample_train(numbers: list[int], rows: Collector, limit: int, seed: int) -> list[int]:
    return sample_rows(numbers, limit, seed, rows.strata(numbers, clean=True))


def stores(dataset, splits: dict[str, list[int]], *, where: bool) -> dict[str, RowStore]:
    return {name: RowStore(dataset, numbers, where=where) for name, numbers in splits.items()}
