"""One trial: the recipe with the trial's values, run by ``pipeline.run`` on the validation split, with
a callback that reports each evaluation's score to Optuna (and stops a pruned or diverging trial).

A trial's outcome is its validation score (COMPLETE), ``optuna.TrialPruned`` (PRUNED), or a
:class:`TrialFailed` carrying the reason (FAIL): a recipe the values make invalid, a NaN loss, out of
memory, or any other ``LoraAdaptError``. Other exceptions are bugs and stop the sweep.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from transformers import TrainerCallback

from .. import artifacts as A
from ..errors import LoraAdaptError
from ..pipeline import run as run_pipeline
from ..recipe import Recipe
from ..recipe.derived import LOSS, metric_name
from ..recipe.sweep import SweepSpec
from ..recipe.trials import resolve_params, trial_recipe, trial_recipe_problems
from .inputs import TrialInputs


class TrialFailed(Exception):
    """A trial that cannot give a score; the sweep records the reason and goes on."""


@dataclass
class TrialCost:
    """Where a trial's time went (seconds) and how many optimizer steps it ran."""

    started: float = field(default_factory=time.perf_counter)
    load_s: float = 0.0
    before_first_step_s: float | None = None
    steps: int = 0
    evaluations: int = 0
    reused: dict[str, bool] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {
            "load_s": round(self.load_s, 2),
            "before_first_step_s": None
            if self.before_first_step_s is None
            else round(self.before_first_step_s, 2),
            "duration_s": round(time.perf_counter() - self.started, 2),
            "steps": self.steps,
            "evaluations": self.evaluations,
            "reused_data": self.reused.get("data", False),
            "reused_base": self.reused.get("base", False),
        }


class TrialReporter(TrainerCallback):
    """Reports the objective at each evaluation (step = evaluation number) and prunes or fails a trial."""

    def __init__(self, trial, metric: str, cost: TrialCost):
        self.trial, self.metric, self.cost = trial, metric, cost

    def on_step_begin(self, args, state, control, **kwargs):
        if self.cost.before_first_step_s is None:
            self.cost.before_first_step_s = time.perf_counter() - self.cost.started

    def on_log(self, args, state, control, logs=None, **kwargs):
        # reachable: the DivergenceGuard (called before this callback) only flags a non-finite logged loss
        # and stops training after the step; its error is raised once training has returned. This stops
        # the trial at once, with the step.
        loss = (logs or {}).get("loss")
        if isinstance(loss, float) and not math.isfinite(loss):
            raise TrialFailed(f"the training loss became {loss} at step {state.global_step}")

    def on_step_end(self, args, state, control, **kwargs):
        self.cost.steps = state.global_step

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(f"eval_{self.metric}")
        if value is None:
            return  # another split's loss (before/after), not the validation evaluation
        loss = (metrics or {}).get("eval_loss")
        if isinstance(loss, float) and not math.isfinite(loss):  # diverged weights can still score finitely
            raise TrialFailed(f"the validation loss became {loss} at step {state.global_step}")
        self.cost.evaluations += 1
        if not math.isfinite(value):
            raise TrialFailed(f"validation {self.metric} is {value} at step {state.global_step}")
        self.trial.report(float(value), step=self.cost.evaluations)
        if self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(
                f"pruned at evaluation {self.cost.evaluations} (step {state.global_step}): "
                f"{self.metric} {value:.4f}"
            )


def run_trial(
    trial, recipe: Recipe, sweep: SweepSpec, params: dict[str, Any], folder: Path, inputs: TrialInputs, echo
) -> tuple[float, dict[str, Any], TrialCost]:
    """Train and score one trial; returns (objective value, the run's metrics, its cost)."""
    metric = objective_metric(recipe, sweep)
    values = resolve_params(recipe, sweep.space, params)
    name = trial_name(trial.number)
    try:
        trial_r = trial_recipe(
            recipe,
            values,
            name=name,
            output={"dir": str(folder / A.SWEEP_TRIALS_DIR), "publish": None, "merge": False},
        )
    except ValidationError as exc:
        raise TrialFailed(f"the values give an invalid recipe: {exc.errors()[0]['msg']}") from None
    invalid = trial_recipe_problems(trial_r)  # a combination of values the load-time checks did not try
    if invalid:
        raise TrialFailed(f"the values give an invalid recipe: {'; '.join(invalid)}")
    cost = TrialCost()

    def load(r, runtime, echo_):
        loaded = inputs(r, runtime, echo_)
        cost.load_s, cost.reused = inputs.last_seconds, dict(inputs.last_reused)
        return loaded

    try:
        result = run_pipeline(
            trial_r,
            overwrite=True,
            callbacks=[TrialReporter(trial, metric, cost)],
            echo=lambda line: echo(f"[{name}] {line}"),
            load=load,
            score_split="validation",
            watch=(metric,),
        )
    except BaseException as exc:
        _discard(folder / A.SWEEP_TRIALS_DIR / name)
        failed = _as_failure(exc)
        failed.cost = cost  # type: ignore[attr-defined]  # read by the sweep to record a stopped trial's cost
        if failed is exc:
            raise
        raise failed from exc
    value = validation_value(result.metrics, metric)
    failure = _diverged(result.metrics)
    if failure is None and (value is None or not math.isfinite(value)):
        failure = f"the run reported no finite validation {metric} ({value})"
    if failure is not None or value is None:
        if result.run_dir is not None:
            shutil.rmtree(result.run_dir, ignore_errors=True)  # only scored trials keep a run directory
        raise TrialFailed(failure)
    return value, result.metrics, cost


def _diverged(metrics: dict[str, Any]) -> str | None:
    """Why a finished trial's training diverged (a non-finite training loss), or None.

    Reachable although the DivergenceGuard raises for every non-finite logged loss or gradient: with
    fp16, an overflowing step (non-finite loss, gradients skipped by the scaler) is tolerated up to a
    streak, and when no log follows it (after the last logging step) only the run's mean loss, never
    checked by the guard, carries it."""
    train = metrics.get("train") or {}
    last, mean = train.get("final_loss"), train.get("mean_loss")
    if any(isinstance(x, float) and not math.isfinite(x) for x in (last, mean)):
        return f"the training loss diverged ({last} last logged, {mean} mean)"
    return None


def objective_metric(recipe: Recipe, sweep: SweepSpec) -> str:
    from ..recipe.derived import headline_metric

    metric = sweep.objective.metric
    return headline_metric(recipe.task) if metric == "auto" else metric_name(metric)


def validation_value(metrics: dict[str, Any], metric: str) -> float | None:
    """The objective from a trial run's metrics.json: its validation loss, or a task score."""
    if metric == LOSS:
        return ((metrics.get("validation") or {}).get("after") or {}).get("loss")
    if (metrics.get("evaluation") or {}).get("split") != "validation":
        return None
    return (metrics.get("task") or {}).get(metric)


def trial_name(number: int) -> str:
    return f"trial-{number:04d}"


def _discard(final: Path) -> None:
    """A pruned or failed trial leaves no run directory behind, unfinished or written for diagnosis (a run
    refused for divergence is written, then fails)."""
    shutil.rmtree(A.in_progress_dir(final), ignore_errors=True)
    shutil.rmtree(final, ignore_errors=True)


def _as_failure(exc: BaseException) -> BaseException:
    """A LoraAdaptError or an out-of-memory error as a :class:`TrialFailed`; anything else unchanged."""
    if isinstance(exc, LoraAdaptError):
        return TrialFailed(f"{type(exc).__name__}: {exc.message}")
    if _out_of_memory(exc):
        return TrialFailed(f"out of memory: {exc}")
    return exc


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
