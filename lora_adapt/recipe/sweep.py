"""The `sweep` section: a hyperparameter search over any recipe key (`lora-adapt sweep RECIPE`).

No torch here. These specs check themselves; what needs the whole recipe (do the keys exist, are the
values valid for them, does the grid fit the budget, can the objective be measured) is checked by
``recipe.trials.sweep_problems`` when the recipe is loaded, so `lora-adapt validate` reports it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from .spec import Spec

Method = Literal["grid", "random", "bayes"]
Direction = Literal["auto", "maximize", "minimize"]
Pruner = Literal["none", "median", "successive_halving", "hyperband"]
ParamKind = Literal["auto", "int", "float"]
GRID_MAX_POINTS = 10_000
"""A numeric range expanded for a grid may have at most this many points."""


class ParamSpec(Spec):
    """One searched key: a list of `values` (categorical), or a numeric range `low`..`high`."""

    values: tuple[Any, ...] | None = None
    """The values to try (numbers, strings, booleans or lists), e.g. `[4, 8, 16]` or `[cosine, linear]`."""
    low: int | float | None = None
    high: int | float | None = None
    """A numeric range, both ends included."""
    log: bool = False
    """Sample the range log-uniformly (learning rates, weight decay): needs `low` > 0."""
    step: int | float | None = Field(None, gt=0)
    """Only values `low + k x step`; a `grid` needs it for a float range (an int range steps by 1)."""
    type: ParamKind = "auto"
    """`int` or `float` range; `auto`: int when `low`, `high` (and `step`) are whole numbers written
    without a decimal point."""
    relative_to: str | None = None
    """Sample a multiple of another key: `adapter.alpha: {values: [1, 2, 4], relative_to: adapter.rank}`
    searches alpha as 1x, 2x or 4x the rank (the rank of the same trial)."""

    @model_validator(mode="after")
    def _values_or_range(self) -> ParamSpec:
        ranged = self.low is not None or self.high is not None
        if (self.values is None) == (not ranged):
            raise ValueError("give either `values` (a list) or a range `low` and `high`")
        if self.values is not None:
            return self._check_values()
        return self._check_range()

    def _check_values(self) -> ParamSpec:
        if not self.values:
            raise ValueError("`values` is empty")
        keys = [json.dumps(v, sort_keys=True) for v in self.values]
        if len(set(keys)) != len(keys):
            raise ValueError("`values` lists the same value twice")
        if self.log or self.step is not None or self.type != "auto":
            raise ValueError("`log`, `step` and `type` apply to ranges, not to `values`")
        return self

    def _check_range(self) -> ParamSpec:
        if self.low is None or self.high is None:
            raise ValueError("a range needs both `low` and `high`")
        if isinstance(self.low, bool) or isinstance(self.high, bool):
            raise ValueError("a range needs numbers, not booleans")
        if not self.low < self.high:
            raise ValueError(f"`low` ({self.low}) must be below `high` ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs `low` > 0 (got {self.low})")
        if self.log and self.step is not None and self.kind == "float":
            raise ValueError("a log range cannot have a `step`")
        if self.kind == "int":
            bad = [n for n in (self.low, self.high, self.step) if n is not None and float(n) != int(n)]
            if bad:
                raise ValueError(f"an int range needs whole numbers (got {bad[0]})")
            if self.log and self.step not in (None, 1):
                raise ValueError("an int log range steps by 1")
        if self.step is not None and self.step > self.high - self.low:
            raise ValueError(f"`step` ({self.step}) is larger than the range ({self.high - self.low})")
        return self

    @property
    def kind(self) -> Literal["categorical", "int", "float"]:
        if self.values is not None:
            return "categorical"
        if self.type != "auto":
            return self.type
        whole = all(isinstance(n, int) for n in (self.low, self.high, self.step) if n is not None)
        return "int" if whole else "float"

    def grid_values(self) -> list[Any] | None:
        """The points a grid visits, or None when the range is continuous (a float range without step)."""
        if self.values is not None:
            return list(self.values)
        assert self.low is not None and self.high is not None
        step = self.step if self.step is not None else (1 if self.kind == "int" else None)
        if step is None:
            return None
        count = math.floor((self.high - self.low) / step + 1e-9) + 1
        if count > GRID_MAX_POINTS:
            return None
        points = [self.low + k * step for k in range(count)]
        return [int(p) for p in points] if self.kind == "int" else [round(p, 12) for p in points]


class ObjectiveSpec(Spec):
    metric: str = "auto"
    """What the search optimises, measured on the **validation** split after each trial: `loss`, or any
    metric the task's evaluation reports (`f1_macro`, `accuracy`, `f1_macro_official`, `f1`, ...).
    `auto`: the task's headline metric (validation loss for sft). The test split is scored once, for
    the best trial only."""
    direction: Direction = "auto"
    """`auto`: minimise `loss`, maximise every other metric."""


class BudgetSpec(Spec):
    trials: int | None = Field(20, ge=1)
    """Trials to finish (completed, pruned or failed; shared by every process working on the sweep).
    20 when the budget gives neither; no count when it gives `minutes` alone (trials run until the time
    is spent, or until every point of a finite space has been tried)."""
    minutes: float | None = Field(None, gt=0)
    """Stop starting new trials after this many minutes of this process's wall time."""

    @model_validator(mode="before")
    @classmethod
    def _minutes_alone_count_no_trials(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("minutes") is not None and "trials" not in data:
            return {**data, "trials": None}
        return data

    @model_validator(mode="after")
    def _some_budget(self) -> BudgetSpec:
        if self.trials is None and self.minutes is None:
            raise ValueError("sweep.budget needs `trials`, `minutes` or both")
        return self


class PruningSpec(Spec):
    method: Pruner = "median"
    """Stop hopeless trials on their intermediate validation scores (reported at each evaluation
    during training): `median` (below the median of earlier trials at the same evaluation),
    `successive_halving`, `hyperband`, or `none`."""
    startup_trials: int = Field(3, ge=0)
    """`median`: trials that finish before any trial is pruned."""
    warmup_evaluations: int = Field(1, ge=0)
    """`median`: evaluations each trial gets before it may be pruned."""


class SweepSpec(Spec):
    space: dict[str, ParamSpec]
    """Keys searched, by dotted recipe path (`adapter.rank`, `training.learning_rate`, ...)."""
    method: Method = "bayes"
    """`grid` (every combination once), `random`, or `bayes` (Optuna's TPE sampler)."""
    objective: ObjectiveSpec = ObjectiveSpec()
    budget: BudgetSpec = BudgetSpec()
    pruning: PruningSpec = PruningSpec()
    startup_trials: int | None = Field(None, ge=1)
    """`bayes`: random trials before TPE models the results. Null: a quarter of `budget.trials`, at
    least 3 (Optuna's default of 10 leaves little of a 20-trial budget to the model)."""
    seed: int = 42
    """Seed of the sampler (and of the order a grid is visited in)."""
    include_recipe: bool = True
    """Try the recipe's own values of the searched keys as the sweep's first trial (when they lie in the
    space; a grid: when they are one of its points), so the best trial is never below them on
    validation, and the report says how far the best is above them. It counts against the budget, and
    is queued when a study starts (turning it on for a sweep under way adds nothing)."""
    dir: Path | None = None
    """The sweep folder (study database, trial runs, tables, plots, best recipe). Null:
    `<output.dir>/<name>-sweep`."""
    reuse_base: Literal["auto", "never"] = "auto"
    """`auto`: keep the loaded base model in memory and give each trial a fresh copy of it when it is
    not quantized (prepared data is always reused while the data settings stay the same); `never`:
    load the base for every trial."""

    @model_validator(mode="after")
    def _has_space(self) -> SweepSpec:
        if not self.space:
            raise ValueError("sweep.space is empty; name at least one key to search")
        return self

    def grid_size(self) -> int | None:
        """Points of the full grid, or None when a key is a continuous range."""
        sizes = [spec.grid_values() for spec in self.space.values()]
        if any(s is None for s in sizes):
            return None
        return math.prod(len(s) for s in sizes if s is not None)
