"""Regression targets: reading numbers from rows, their training statistics, and the head's scaling.

A regression row's canonical column ``targets`` is a list of floats, one per target in
``recipe.derived.target_names(task)`` order. Values may be numbers or numeric strings (``"3.80"``,
``"4"``, ``"2.11111111111111"``); anything else - empty, ``NaN``, infinite, a list or an object - is an
error naming the row and the column, never a silently dropped row.

The head trains on standardised targets when ``task.target_scaling: standardize``: ``(y - mean) / std``
with the training split's mean and (population) standard deviation. The scaling is recorded in
``manifest.json`` / ``adapter/lora_adapt.json`` (``task.targets.scaling``) and undone at prediction time
(``evaluation.prediction.decode_regression``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..errors import DataError
from ..recipe.derived import DEFAULT_TARGET, target_names
from ..recipe.schema import TaskSpec
from .paths import describe_value, is_path, lookup


def read_targets(row: dict[str, Any], task: TaskSpec, where: str) -> list[float]:
    """The row's target values, in ``target_names(task)`` order."""
    out = []
    for name in target_names(task):
        origin = "task.targets" if task.targets else "the label column (data.columns.label)"
        if name in row:
            value = row[name]
        elif is_path(name):
            value = lookup(row, name, where, origin)
        else:
            have = ", ".join(k for k in row if not k.startswith("_"))
            raise DataError(
                f"{where}: no column {name!r} for the regression target ({origin}); the row has: {have}",
                hint="name your numeric columns in task.targets, e.g. `targets: [V, A, D]`"
                if name == DEFAULT_TARGET
                else "fix task.targets to name numeric columns of the data",
            )
        out.append(to_number(value, name, where))
    return out


def to_number(value: Any, name: str, where: str) -> float:
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        raise DataError(
            f"{where}: target {name!r} is {describe_value(value)}, not a finite number",
            hint="regression targets must be numbers; fix or remove the row (or check task.targets)",
        )
    return number


def target_stats(rows: Sequence[dict[str, Any]], names: tuple[str, ...]) -> dict[str, Any]:
    """Mean, population standard deviation, min and max of each target over ``rows``."""
    columns = list(zip(*(row["targets"] for row in rows), strict=True)) if rows else [()] * len(names)
    stats: dict[str, Any] = {"names": list(names), "mean": [], "std": [], "min": [], "max": []}
    for values in columns:
        mean = sum(values) / len(values) if values else 0.0
        var = sum((v - mean) ** 2 for v in values) / len(values) if values else 0.0
        stats["mean"].append(round(mean, 8))
        stats["std"].append(round(math.sqrt(var), 8))
        stats["min"].append(min(values, default=0.0))
        stats["max"].append(max(values, default=0.0))
    return stats


def head_scaling(stats: dict[str, Any], method: str) -> dict[str, Any]:
    """What the head is trained on: ``{"method", "mean", "std"}`` (identity for ``none``; std 0 -> 1)."""
    n = len(stats["names"])
    if method != "standardize":
        return {"method": "none", "mean": [0.0] * n, "std": [1.0] * n}
    return {"method": "standardize", "mean": list(stats["mean"]), "std": [s or 1.0 for s in stats["std"]]}


def scale(values: list[float], scaling: dict[str, Any]) -> list[float]:
    return [(v - m) / s for v, m, s in zip(values, scaling["mean"], scaling["std"], strict=True)]


def unscale(values, scaling: dict[str, Any] | None) -> list[float]:
    """A head's outputs in the data's units: ``scale`` undone (identity without a standardize scaling)."""
    if not scaling or scaling.get("method") != "standardize":
        return [float(v) for v in values]
    return [float(v) * s + m for v, m, s in zip(values, scaling["mean"], scaling["std"], strict=True)]


def format_number(value: float) -> str:
    """How a target is written for a generative model (two decimals: 3.80, 2.11)."""
    return f"{value:.2f}"


def format_targets(values: list[float], names: tuple[str, ...]) -> str:
    """``3.80`` for one target; ``V: 3.20; A: 2.80; D: 3.10`` for several (parsed back by evaluation)."""
    if len(names) == 1:
        return format_number(values[0])
    return "; ".join(f"{name}: {format_number(v)}" for name, v in zip(names, values, strict=True))
