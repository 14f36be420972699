"""Several training sources mixed into one list of canonical training rows (``data.sources``).

The seam: ``mix`` takes each source's canonical rows (read and mapped to canonical columns by the
preparation, each with its own column mapping) and returns the training rows *before* cleaning and
splitting, plus per-source counts. It never tokenizes and needs nothing but the rows, so a columnar
(Arrow) preparation can call it on the same inputs, or reimplement it on tables with these rules:

1. Sources are taken in the listed order. With ``data.mixing.deduplicate`` a row equal to one of an
   earlier source (compared after the ``data.cleaning`` normalisation) is dropped and counted, as are
   duplicates within a source and (with ``cleaning.drop_empty``) empty rows, so quotas count rows that
   cleaning keeps.
2. Weighted sources: the mix has ``data.mixing.rows`` rows (default: the most the weights allow without
   repeating a row); source i contributes ``rows x w_i / sum w`` (largest remainders, so the counts add
   up). Ratio sources: source i contributes ``ceil(ratio_i x its rows)``.
3. Each source's rows are a seeded sample kept in source order (seed ``mixing.seed``, default
   ``data.split.seed``, and the source's name); the mix is the sources' samples one after the other.

``final_counts`` counts, after cleaning and splitting, how many rows of each source each split kept.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import DataError
from ..recipe.mixing import MixingSpec, SourceSpec
from ..recipe.schema import CleaningSpec
from . import cleaning
from .sources import WHERE

Rows = list[dict[str, Any]]


def mix(
    sources: Sequence[tuple[SourceSpec, Rows]],
    mixing: MixingSpec,
    rules: CleaningSpec,
    layout: str,
    seed: int,
) -> tuple[Rows, dict[str, dict[str, Any]]]:
    """The mixed training rows and ``{source name: counts}`` (see the module doc)."""
    unique, stats = _unique_rows(sources, mixing, rules, layout)
    counts = _quotas([spec for spec, _ in sources], [len(unique[spec.label]) for spec, _ in sources], mixing)
    mixed: Rows = []
    for spec, _ in sources:
        rows, want = unique[spec.label], counts[spec.label]
        picked = sorted(
            random.Random(f"{mixing.seed if mixing.seed is not None else seed}:{spec.label}").sample(
                range(len(rows)), want
            )
        )
        mixed += [rows[i] for i in picked]
        stats[spec.label]["drawn"] = want
    return mixed, stats


def _unique_rows(
    sources: Sequence[tuple[SourceSpec, Rows]], mixing: MixingSpec, rules: CleaningSpec, layout: str
) -> tuple[dict[str, Rows], dict[str, dict[str, Any]]]:
    seen: set[str] = set()
    unique: dict[str, Rows] = {}
    stats: dict[str, dict[str, Any]] = {}
    for spec, rows in sources:
        normalized = cleaning.normalize_rows(rows, rules, {})
        own: set[str] = set()
        kept: Rows = []
        counts = {"empty": 0, "duplicates_within": 0, "duplicates_of_earlier": 0}
        for row, norm in zip(rows, normalized, strict=True):
            key = cleaning.row_key(norm)
            if rules.drop_empty and cleaning.is_empty(norm, layout):
                counts["empty"] += 1
            elif mixing.deduplicate and key in seen:
                counts["duplicates_of_earlier"] += 1
            elif mixing.deduplicate and key in own:
                counts["duplicates_within"] += 1
            else:
                own.add(key)
                kept.append(row)
        seen |= own
        unique[spec.label] = kept
        stats[spec.label] = {
            "path": str(spec.path),
            "weight": spec.weight,
            "ratio": spec.ratio if spec.weight is None else None,
            "rows_read": len(rows),
            **counts,
            "available": len(kept),
        }
    return unique, stats


def _quotas(specs: Sequence[SourceSpec], available: Sequence[int], mixing: MixingSpec) -> dict[str, int]:
    if specs[0].weight is None:
        return {
            s.label: min(n, math.ceil((s.ratio if s.ratio is not None else 1.0) * n))
            for s, n in zip(specs, available, strict=True)
        }
    total_weight = sum(s.weight or 0.0 for s in specs)
    shares = [(s.weight or 0.0) / total_weight for s in specs]
    rows = (
        mixing.rows
        if mixing.rows is not None
        else min(math.floor(n / p + 1e-9) for n, p in zip(available, shares, strict=True))
    )
    counts = _largest_remainders(rows, shares)
    for spec, want, have in zip(specs, counts, available, strict=True):
        if want > have:
            raise DataError(
                f"data.sources: '{spec.label}' has {have} usable rows but its weight asks for {want} of the "
                f"{rows} mixed rows (a row is never repeated)",
                hint="lower data.mixing.rows (or leave it out: the weights then set the largest mix that fits), "
                "or lower this source's weight",
            )
    return {spec.label: want for spec, want in zip(specs, counts, strict=True)}


def _largest_remainders(total: int, shares: Sequence[float]) -> list[int]:
    exact = [total * p for p in shares]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(shares)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def final_counts(stats: dict[str, dict[str, Any]], splits: Mapping[str, Sequence[dict[str, Any]]]) -> None:
    """Add ``final: {split: rows}`` to each source's counts, from the rows' ``_where`` (file:line)."""
    paths = {name: s["path"] for name, s in stats.items()}
    for name in stats:
        stats[name]["final"] = {split: 0 for split in splits}
    for split, rows in splits.items():
        for row in rows:
            source = _source_of(str(row.get(WHERE, "")), paths)
            if source is not None:
                stats[source]["final"][split] += 1


def _source_of(where: str, paths: dict[str, str]) -> str | None:
    for name, path in paths.items():
        if where.startswith(path) and where[len(path) : len(path) + 1] in (":", "[", "/"):
            return name
    return None
