"""The search space as Optuna sees it: one suggestion per searched key, and the grid's points.

Optuna parameter names are the dotted recipe paths; a `relative_to` key is named
``adapter.alpha/adapter.rank`` (its value is the multiple). Categorical values Optuna cannot store
(lists, mappings) travel as their JSON text and are decoded here.
"""

from __future__ import annotations

import json
import random
from typing import Any

from ..recipe.sweep import ParamSpec, SweepSpec
from ..recipe.trials import grid_points

SCALARS = (str, int, float, bool, type(None))


def param_name(path: str, spec: ParamSpec) -> str:
    return f"{path}/{spec.relative_to}" if spec.relative_to else path


def encode(value: Any) -> Any:
    return value if isinstance(value, SCALARS) else json.dumps(value, sort_keys=True)


def decode(spec: ParamSpec, value: Any) -> Any:
    if isinstance(value, str) and spec.values is not None and value not in spec.values:
        return json.loads(value)
    return value


def suggest(trial, sweep: SweepSpec) -> dict[str, Any]:
    """{dotted path: sampled value} for one trial (multiples not yet resolved)."""
    sampled = {}
    for path, spec in sweep.space.items():
        name = param_name(path, spec)
        if spec.values is not None:
            value = trial.suggest_categorical(name, [encode(v) for v in spec.values])
            sampled[path] = decode(spec, value)
            continue
        low, high = float(spec.low or 0), float(spec.high or 0)  # a range has both (ParamSpec checks)
        if spec.kind == "int":
            step = int(spec.step or 1)
            sampled[path] = trial.suggest_int(name, int(low), int(high), step=step, log=spec.log)
        else:
            sampled[path] = trial.suggest_float(name, low, high, step=spec.step, log=spec.log)
    return sampled


def grid_params(sweep: SweepSpec) -> list[dict[str, Any]]:
    """Every grid point as Optuna parameters ({param name: encoded value}), in a seeded order."""
    points = [
        {param_name(path, sweep.space[path]): encode(value) for path, value in point.items()}
        for point in grid_points(sweep)
    ]
    random.Random(sweep.seed).shuffle(points)
    return points


def same_params(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal parameter sets (floats compared to 12 significant digits: SQLite stores them as doubles)."""
    if a.keys() != b.keys():
        return False
    return all(_same(a[k], b[k]) for k in a)


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, float) or isinstance(y, float):
        try:
            return abs(float(x) - float(y)) <= 1e-12 * max(1.0, abs(float(x)))
        except (TypeError, ValueError):
            return False
    return bool(x == y)
