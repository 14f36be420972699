"""A recipe with searched values put in (``trial_recipe``), and the checks of what a recipe watches:
the early-stopping metric and the whole `sweep` section (``recipe_problems``). No torch: `lora-adapt
validate` runs these checks, and the sweep builds every trial's recipe with ``trial_recipe``.

A problem is ``(location, message)``: the location is the key path the loader turns into
`file:line` (or `--set key`).
"""

from __future__ import annotations

import difflib
import json
import typing
from collections.abc import Iterator, Mapping
from itertools import product
from typing import Any

from pydantic import BaseModel, ValidationError

from .derived import BINARY_ONLY_METRICS, greater_is_better, metric_name, validation_metrics
from .schema import Recipe
from .sweep import ParamSpec, SweepSpec

Problem = tuple[tuple, str]
NOT_SEARCHABLE = ("name", "description", "output", "sweep")
"""Top-level keys a sweep may not search: they say where and under what name trials are written."""
GRID_CHECK_MAX = 2_000
"""A grid up to this size has every combination validated at load time (pydantic only, no data)."""


# --- putting values into a recipe --------------------------------------------------------------


def recipe_values(recipe: Recipe) -> dict[str, Any]:
    """The recipe as the user wrote it (set keys only, paths resolved), without its `sweep` section."""
    raw = recipe.model_dump(mode="json", exclude_unset=True)
    raw.pop("sweep", None)
    return raw


def set_path(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def get_path(raw: Mapping[str, Any], dotted: str) -> Any:
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def resolve_params(recipe: Recipe, space: Mapping[str, ParamSpec], sampled: Mapping[str, Any]) -> dict:
    """Sampled values -> recipe values: a `relative_to` value is multiplied by its target's value
    (the same trial's, or the recipe's when the target is not searched)."""
    full = recipe.model_dump(mode="json")
    out = dict(sampled)
    for path, spec in space.items():
        if spec.relative_to is None or path not in out:
            continue
        base = out.get(spec.relative_to, get_path(full, spec.relative_to))
        value = out[path] * base
        out[path] = int(value) if _field_is_int(path) and float(value).is_integer() else value
    return out


def trial_recipe(recipe: Recipe, params: Mapping[str, Any], **sections: Any) -> Recipe:
    """``recipe`` with ``params`` (dotted path -> value, already resolved) and ``sections`` (merged over
    whole sections, e.g. ``output={...}``) put in, validated as a new recipe (without `sweep`)."""
    raw = recipe_values(recipe)
    for path, value in params.items():
        set_path(raw, path, value)
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, Mapping) else values
    return Recipe.model_validate(raw)


# --- checks ------------------------------------------------------------------------------------


def recipe_problems(recipe: Recipe) -> list[Problem]:
    """What pydantic cannot check on one section: the metric early stopping watches and the sweep."""
    problems = []
    stopping = recipe.training.early_stopping
    if stopping is not None:
        problems += _metric_problem(recipe, stopping.metric, ("training", "early_stopping", "metric"))
    if recipe.sweep is not None:
        problems += sweep_problems(recipe, recipe.sweep)
    return problems


def sweep_problems(recipe: Recipe, sweep: SweepSpec) -> list[Problem]:
    problems: list[Problem] = []
    unknown = set()
    for path, spec in sweep.space.items():
        found = _path_problems(path, spec, sweep)
        problems += found
        unknown |= {path} if found else set()
    for path, spec in sweep.space.items():  # values can only be checked against keys that exist
        if path not in unknown and (spec.relative_to is None or spec.relative_to not in unknown):
            problems += _value_problems(recipe, sweep, path, spec)
    if not unknown:
        problems += _grid_problems(recipe, sweep)
    metric = sweep.objective.metric
    if metric != "auto":
        problems += _metric_problem(recipe, metric, ("sweep", "objective", "metric"))
    if not _has_validation(recipe):
        problems.append(
            (
                ("sweep",),
                "a sweep chooses on the validation split: set data.split.validation > 0 or data.validation",
            )
        )
    if sweep.objective.direction != "auto" and metric != "auto":
        natural = "maximize" if greater_is_better(metric) else "minimize"
        if sweep.objective.direction != natural:
            problems.append(
                (
                    ("sweep", "objective", "direction"),
                    f"'{sweep.objective.direction}' {metric}? {metric} is better when "
                    f"{'higher' if natural == 'maximize' else 'lower'}; use '{natural}' or 'auto'",
                )
            )
    problems += _pruning_problems(recipe, sweep)
    return problems


def _metric_problem(recipe: Recipe, metric: str, loc: tuple) -> list[Problem]:
    known = validation_metrics(recipe.task)
    labels = recipe.task.labels
    if metric_name(metric) in BINARY_ONLY_METRICS and labels is not None and len(labels) != 2:
        return [
            (
                loc,
                f"'{'.'.join(loc)}' = {metric!r} exists for two labels only (task.labels has {len(labels)})",
            )
        ]
    if metric_name(metric) in known:
        return []
    guess = difflib.get_close_matches(metric_name(metric), known, n=1, cutoff=0.5)
    fix = f"did you mean '{guess[0]}'?" if guess else f"known: {', '.join(known)}"
    return [(loc, f"'{'.'.join(loc)}' = {metric!r} is not a validation metric of this task — {fix}")]


def raw_space_problems(raw: Any) -> list[Problem]:
    """Unknown keys in a raw (unvalidated) recipe's ``sweep.space``, reported beside pydantic's errors
    when the recipe does not validate (so every problem comes out in one pass)."""
    sweep = raw.get("sweep") if isinstance(raw, dict) else None
    space = sweep.get("space") if isinstance(sweep, dict) else None
    if not isinstance(space, dict):
        return []
    problems: list[Problem] = []
    for path, spec in space.items():
        loc = ("sweep", "space", str(path))
        problem = _path_problem(str(path))
        if problem:
            problems.append((loc, f"sweep.space.{path}: {problem}"))
        target = spec.get("relative_to") if isinstance(spec, dict) else None
        problem = _path_problem(target) if isinstance(target, str) else None
        if problem:
            problems.append((loc, f"sweep.space.{path}.relative_to: {problem}"))
    return problems


def _path_problems(path: str, spec: ParamSpec, sweep: SweepSpec) -> list[Problem]:
    loc = ("sweep", "space", path)
    where = f"sweep.space.{path}"
    problem = _path_problem(path)
    if problem:
        return [(loc, f"{where}: {problem}")]
    target = spec.relative_to
    if target is None:
        return []
    problem = _path_problem(target)
    if problem:
        return [(loc, f"{where}.relative_to: {problem}")]
    if not _field_is_numeric(target):
        return [(loc, f"{where}.relative_to: {target} is not a number")]
    if target in sweep.space and sweep.space[target].relative_to is not None:
        return [(loc, f"{where}.relative_to: {target} is itself relative; chain no more than one step")]
    if spec.kind == "categorical" and not all(is_number(v) for v in spec.values or ()):
        return [(loc, f"{where}: relative values must be numbers (multiples of {target})")]
    return []


def _path_problem(path: str) -> str | None:
    """Why ``path`` cannot be searched, or None."""
    parts = path.split(".")
    if parts[0] in NOT_SEARCHABLE:
        return f"'{parts[0]}' cannot be searched (trials are named and written by the sweep)"
    model: Any = Recipe
    for depth, part in enumerate(parts):
        fields = model.model_fields if _is_model(model) else {}
        if part not in fields:
            known = list(fields)
            prefix = ".".join(parts[:depth]) or "the recipe"
            if not known:
                return f"{prefix} has no keys inside it"
            guess = difflib.get_close_matches(part, known, n=1, cutoff=0.6)
            fix = f"did you mean '{guess[0]}'?" if guess else f"keys of {prefix}: {', '.join(known)}"
            return f"unknown key '{part}' in {prefix} — {fix}"
        model = _section(fields[part].annotation) or fields[part].annotation
    if _is_model(model):
        return f"'{path}' is a section; name a key inside it ({', '.join(model.model_fields)})"
    return None


def _value_problems(recipe: Recipe, sweep: SweepSpec, path: str, spec: ParamSpec) -> list[Problem]:
    loc = ("sweep", "space", path)
    if spec.kind == "float" and _field_is_int(path) and spec.relative_to is None:
        return [(loc, f"sweep.space.{path}: {path} takes whole numbers; write low/high as integers")]
    points = list(spec.values) if spec.values is not None else [spec.low, spec.high]
    problems = []
    for value in points:
        params = resolve_params(recipe, sweep.space, {path: value})
        error = _invalid(recipe, params)
        if error:
            problems.append((loc, f"sweep.space.{path}: {value!r} gives an invalid recipe: {error}"))
    return problems


def _grid_problems(recipe: Recipe, sweep: SweepSpec) -> list[Problem]:
    if sweep.method != "grid":
        return []
    loc = ("sweep", "method")
    continuous = [p for p, s in sweep.space.items() if s.grid_values() is None]
    if continuous:
        return [
            (
                loc,
                f"sweep.method 'grid' needs a finite list for every key; give {', '.join(continuous)} "
                "`values` or a `step`",
            )
        ]
    size = sweep.grid_size() or 0
    trials = sweep.budget.trials
    if trials is not None and size > trials:
        return [
            (
                ("sweep", "budget", "trials"),
                f"the grid has {size} points but sweep.budget.trials is {trials}: raise the budget to "
                f"{size}, shrink the grid, or use method random / bayes",
            )
        ]
    if size <= GRID_CHECK_MAX:
        for params in grid_points(sweep):
            error = _invalid(recipe, resolve_params(recipe, sweep.space, params))
            if error:
                return [(loc, f"the grid point {params} gives an invalid recipe: {error}")]
    return []


def grid_points(sweep: SweepSpec) -> Iterator[dict[str, Any]]:
    names = list(sweep.space)
    grids = [sweep.space[name].grid_values() or [] for name in names]
    for combo in product(*grids):
        yield dict(zip(names, combo, strict=True))


def _pruning_problems(recipe: Recipe, sweep: SweepSpec) -> list[Problem]:
    if sweep.pruning.method == "none":
        return []
    t = recipe.training
    searched = {"training.epochs", "training.eval_steps", "training.max_steps"} & set(sweep.space)
    if t.eval_steps is None and t.max_steps is None and t.epochs < 2 and not searched:
        return [
            (
                ("sweep", "pruning", "method"),
                "pruning compares trials mid-way and needs at least 2 evaluations per trial; set "
                "training.eval_steps, or training.epochs >= 2, or sweep.pruning.method: none",
            )
        ]
    return []


def _has_validation(recipe: Recipe) -> bool:
    d = recipe.data
    return d.validation is not None or d.split.validation > 0 or d.split.column is not None


def _invalid(recipe: Recipe, params: Mapping[str, Any]) -> str | None:
    """Why the trial recipe of ``params`` is invalid, or None: pydantic's checks, then the ones it cannot
    make (:func:`trial_recipe_problems`)."""
    try:
        trial = trial_recipe(recipe, params)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        return f"{where + ': ' if where else ''}{str(err['msg']).removeprefix('Value error, ')}"
    found = trial_recipe_problems(trial)
    if found:  # the recipe's own problems are reported once, at their own keys, not for every value
        own = set(trial_recipe_problems(trial_recipe(recipe, {})))
        found = [message for message in found if message not in own]
    return found[0] if found else None


def trial_recipe_problems(trial: Recipe) -> list[str]:
    """What a trial recipe (built by :func:`trial_recipe`, which pydantic checked) still gets wrong: the
    checks `lora-adapt validate` makes beyond pydantic (:func:`recipe_problems`), e.g. an early-stopping
    metric the trial's task does not report."""
    return [message for _, message in recipe_problems(trial)]


# --- schema introspection ----------------------------------------------------------------------


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _section(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if _is_model(candidate):
            return candidate
    return None


def _leaf(path: str) -> Any:
    model: Any = Recipe
    annotation: Any = None
    for part in path.split("."):
        annotation = model.model_fields[part].annotation
        model = _section(annotation) or annotation
    return annotation


def _field_is_int(path: str) -> bool:
    args = typing.get_args(_leaf(path)) or (_leaf(path),)
    return int in args and float not in args


def _field_is_numeric(path: str) -> bool:
    args = typing.get_args(_leaf(path)) or (_leaf(path),)
    return bool({int, float} & set(args))


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def describe_params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items())
