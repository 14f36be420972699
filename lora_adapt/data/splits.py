"""Seeded train/validation/test splits, stratified by label where asked and possible.

Test is carved first, then validation (its share is of the whole, so it is rescaled on the rest).
Within a split rows keep their source order. A split depends only on the rows, the shares and the
seed. Stratified carving gives every label its share (largest remainders); labels with a single
row cannot be in two splits and stay in train (noted).

``sample_rows`` draws the training sample of ``data.max_train_samples``: stratified, every label
keeps its share and, while the cap allows, at least one row (a small sample should not lose a class
the full data has); the kept rows stay in source order.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Any, TypeVar

from ..errors import DataError
from ..recipe.schema import SplitSpec

Rows = list[dict[str, Any]]
T = TypeVar("T")  # a row, or a row number standing for it
SPLIT_NAMES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "dev": "validation",
    "test": "test",
}


def carve(
    rows: list[T], share: float, seed: int, labels: list[str] | None
) -> tuple[list[T], list[T], list[str]]:
    """Split off ``share`` of rows: (rest, carved, notes)."""
    count = math.ceil(share * len(rows)) if share > 0 else 0
    if count == 0:
        return rows, [], []
    if count >= len(rows):
        return [], rows, []
    notes: list[str] = []
    if labels is None:
        picked = set(random.Random(seed).sample(range(len(rows)), count))
    else:
        picked, notes = _stratified_pick(labels, count, seed)
    rest = [row for i, row in enumerate(rows) if i not in picked]
    return rest, [row for i, row in enumerate(rows) if i in picked], notes


def _stratified_pick(labels: list[str], count: int, seed: int) -> tuple[set[int], list[str]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        groups[label].append(i)
    small = sorted(label for label, idx in groups.items() if len(idx) < 2)
    notes = [f"labels with a single row stay in train: {small}"] if small else []
    usable = {label: idx for label, idx in groups.items() if len(idx) >= 2}
    total = sum(len(idx) for idx in usable.values())
    if total == 0:
        return set(), notes
    quotas = _largest_remainder(
        {k: len(v) * count / total for k, v in sorted(usable.items())}, min(count, total)
    )
    rng = random.Random(seed)
    picked: set[int] = set()
    for label in sorted(usable):
        idx = list(usable[label])
        rng.shuffle(idx)
        picked.update(idx[: min(quotas[label], len(idx) - 1)])
    return picked, notes


def _largest_remainder(exact: dict[str, float], count: int) -> dict[str, int]:
    quotas = {k: math.floor(v) for k, v in exact.items()}
    left = count - sum(quotas.values())
    for key in sorted(exact, key=lambda k: (-(exact[k] - quotas[k]), k))[:left]:
        quotas[key] += 1
    return quotas


def split_by_ratio(
    rows: list[T],
    spec: SplitSpec,
    labels: list[str] | None,
    missing: tuple[str, ...] = ("validation", "test"),
) -> tuple[dict[str, list[T]], list[str]]:
    """Carve the missing splits from ``rows``: {train, validation?, test?} and notes."""
    out: dict[str, list[T]] = {}
    notes: list[str] = []
    rest, rest_labels = rows, labels
    test_share = spec.test if "test" in missing else 0.0
    for name, share in (
        ("test", test_share),
        ("validation", spec.validation if "validation" in missing else 0.0),
    ):
        if name not in missing or share <= 0:
            continue
        relative = share if name == "test" else share / (1 - test_share)
        kept, carved, more = carve(rest, relative, spec.seed, rest_labels)
        if rest_labels is not None:
            kept_ids = {id(row) for row in kept}
            rest_labels = [lab for row, lab in zip(rest, rest_labels, strict=True) if id(row) in kept_ids]
        rest = kept
        out[name] = carved
        notes += [f"{name}: {n}" for n in more]
    out["train"] = rest
    return out, notes


def split_by_column(rows: Rows, column: str, source: str) -> dict[str, Rows]:
    """Rows grouped by the split their ``column`` names (train, validation/valid/dev, test; any case)."""
    out: dict[str, Rows] = {}
    for row in rows:
        out.setdefault(split_of(row, column, source), []).append(row)
    if "train" not in out:
        raise DataError(f"{source}: no row has {column} = train", hint="check data.split.column")
    return out


def split_of(row: dict[str, Any], column: str, source: str) -> str:
    """The split a row's ``column`` names (``split_by_column``)."""
    value = str(row.get(column, "")).strip().lower()
    name = SPLIT_NAMES.get(value)
    if name is None:
        where = row.get("_where", source)
        shown = repr(row[column]) if column in row else "missing"
        raise DataError(
            f"{where}: data.split.column {column!r} is {shown}; expected train, validation (valid, dev) or test",
            hint="fix the row, or drop data.split.column to carve the splits by ratio",
        )
    return name


def sample_rows(rows: list[T], limit: int, seed: int, labels: list[str] | None) -> list[T]:
    """At most ``limit`` rows, seeded, in source order; stratified by ``labels`` when given."""
    if len(rows) <= limit:
        return rows
    rng = random.Random(seed)
    if labels is None:
        picked = set(rng.sample(range(len(rows)), limit))
        return [row for i, row in enumerate(rows) if i in picked]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        groups[label].append(i)
    quotas = _sample_quotas({k: len(v) for k, v in groups.items()}, limit)
    picked = set()
    left: list[int] = []
    for label in sorted(groups):
        idx = list(groups[label])
        rng.shuffle(idx)
        picked.update(idx[: quotas[label]])
        left += idx[quotas[label] :]
    rng.shuffle(left)
    picked.update(left[: limit - len(picked)])
    return [row for i, row in enumerate(rows) if i in picked]


def _sample_quotas(sizes: dict[str, int], limit: int) -> dict[str, int]:
    """Rows per label: one each while ``limit`` allows, the rest in proportion to each label's share."""
    floor = 1 if limit >= len(sizes) else 0
    total = sum(sizes.values())
    wanted = {k: max(n * limit / total - floor, 0.0) for k, n in sorted(sizes.items())}
    spare = limit - floor * len(sizes)
    scale = spare / sum(wanted.values()) if sum(wanted.values()) > 0 else 0.0
    extra = _largest_remainder({k: w * scale for k, w in wanted.items()}, spare)
    return {k: min(sizes[k], floor + extra[k]) for k in sizes}
