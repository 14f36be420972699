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
from ..recipe.trials import get_path, grid_points, is_number

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


def recipe_point(recipe_dict: dict[str, Any], sweep: SweepSpec) -> tuple[dict[str, Any] | None, str]:
    """The recipe's own values of the searched keys as Optuna parameters ({param name: encoded value}),
    or None and why they are not a point of the space (a value outside a range or list, off a range's
    step or the grid; a multiple that is not one of a `relative_to` key's values)."""
    point = {}
    for path, spec in sweep.space.items():
        value = get_path(recipe_dict, path)
        shown = f"{path} {value!r}"
        if spec.relative_to is not None:
            base = get_path(recipe_dict, spec.relative_to)
            if not is_number(value) or not is_number(base) or not base:
                return None, f"{shown} is not a multiple of {spec.relative_to} {base!r}"
            value = value / base
            shown = f"{path} {value:g} x {spec.relative_to}"
        inside = _in_space(spec, value)
        if inside is None:
            return None, f"{shown} is not in the space"
        point[param_name(path, spec)] = encode(inside[0])
    return point, ""


def _in_space(spec: ParamSpec, value: Any) -> tuple[Any] | None:
    """(the space's own spelling of ``value``,) when the space holds it, else None. A list, an int range
    and a stepped range hold their grid's points (what a sampler draws from them too); a continuous range
    holds every number between its ends."""
    points = spec.grid_values()
    if points is not None:
        found = [p for p in points if _equal(p, value)]
        return (found[0],) if found else None
    if not is_number(value) or not float(spec.low or 0) <= value <= float(spec.high or 0):
        return None
    if spec.kind == "int":  # a range too long to list (more than GRID_MAX_POINTS)
        return (int(value),) if float(value).is_integer() else None
    return (float(value),)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b  # True is not the value 1
    return _same(a, b)


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
