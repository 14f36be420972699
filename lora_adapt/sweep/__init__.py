"""`lora-adapt sweep RECIPE`: a hyperparameter search over the recipe's `sweep.space`, built on Optuna.

Each trial is ``pipeline.run`` of the recipe with the trial's values, scored on the validation split
(the test split is never touched while choosing), in its own run directory under
``<sweep dir>/trials/``. Trials reuse the prepared data and, where safe, the loaded base
(``inputs.py``); intermediate validation scores go to Optuna from inside training so a pruner can stop
hopeless trials (``trial.py``). The study lives in SQLite in the sweep folder: an interrupted sweep
resumes where it stopped and several processes can work on one study (``study.py``). At the end the
best trial's test split is scored once, and the tables, plots, best recipe and report are written
(``results.py``).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .. import artifacts as A
from ..errors import UsageError
from ..recipe import Recipe
from ..recipe.derived import greater_is_better
from ..recipe.trials import describe_params, resolve_params
from .holdout import score_test
from .inputs import TrialInputs
from .results import (
    run_dir_of,
    trial_rows,
    trial_values,
    write_best_recipe,
    write_plots,
    write_summary,
    write_tables,
)
from .space import recipe_point, suggest
from .study import (
    counted,
    earlier_trial,
    exhausted,
    fail_dead_trials,
    fail_interrupted,
    interrupted,
    mark_process,
    open_study,
    queue_grid,
    queue_untried,
    repeat_of,
    running_twin,
    searched_settings,
    tell_repeat,
    tell_twin,
    worker_slot,
)
from .trial import TrialFailed, objective_metric, run_trial, trial_name

__all__ = ["SweepResult", "refuse_distributed", "run_sweep", "sweep_folder"]


@dataclass(frozen=True)
class SweepResult:
    folder: Path
    summary: dict[str, Any]


def sweep_folder(recipe: Recipe) -> Path:
    sweep = recipe.sweep
    if sweep is not None and sweep.dir is not None:
        return Path(sweep.dir)
    return Path(recipe.output.dir).resolve() / f"{recipe.name}-sweep"


def run_sweep(recipe: Recipe, *, echo=print) -> SweepResult:
    """Run (or resume) the recipe's sweep until its budget is spent; write the results."""
    sweep = recipe.sweep
    if sweep is None:
        raise UsageError(
            "the recipe has no `sweep` section",
            hint="add one (see README, Sweeps), or give it in its own file: --sweep recipes/sweeps/lora-small-data.yaml",
        )
    refuse_distributed()
    folder = sweep_folder(recipe)
    with worker_slot(folder) as worker:
        return _run(recipe, folder, worker, echo)


def _run(recipe: Recipe, folder: Path, worker: int, echo) -> SweepResult:
    sweep = recipe.sweep
    assert sweep is not None
    metric = objective_metric(recipe, sweep)
    direction = _direction(sweep.objective.direction, metric)
    searched = searched_settings(recipe.model_dump(mode="json"))
    study = open_study(sweep, folder, recipe.name, direction, searched, worker)
    if worker:
        echo(
            f"sweep: {worker} other process(es) are working on this sweep; this one joins them as worker "
            f"{worker}, with a sampler seed of its own"
        )
    dead = fail_dead_trials(study)
    if dead:
        echo(f"sweep: {dead} trial(s) of a stopped process marked interrupted and queued again")
    _discard_interrupted(study, folder)
    queued = ""
    if sweep.include_recipe and not study.get_trials(deepcopy=False):
        queued = _queue_recipe_values(study, recipe)
    budget = sweep.budget.trials
    if sweep.method == "grid":
        size = queue_grid(study, sweep)
        budget = min(budget or size, size)
    done = counted(study)
    minutes = f"{sweep.budget.minutes:g} minutes" if sweep.budget.minutes else ""
    progress = (
        f"{done} of {budget} trials done" + (f", within {minutes}" if sweep.budget.minutes else "")
        if budget
        else f"{done} trials done; trials until {minutes} are spent"
    )
    echo(
        f"sweep: {sweep.method} over {', '.join(sweep.space)}; {metric} ({direction}) on the validation split; "
        f"{progress}; folder {folder}"
    )
    if queued:
        echo(queued)
    inputs = TrialInputs(reuse_base=sweep.reuse_base == "auto")
    deadline = time.monotonic() + sweep.budget.minutes * 60 if sweep.budget.minutes else None
    while (budget is None or counted(study) < budget) and (deadline is None or time.monotonic() < deadline):
        if exhausted(study, sweep):  # a finite space ends before the budget: further trials only repeat
            echo("sweep: every point of the space has been tried")
            break
        _one_trial(study, recipe, folder, inputs, metric, worker, echo)
        _write_tables(study, recipe, folder)
    else:  # the loop's own condition ended it: say which budget was spent
        spent = budget is not None and counted(study) >= budget
        echo(f"sweep: {f'{budget} trials done' if spent else f'{minutes} spent'}")
    return SweepResult(folder, finish(study, recipe, folder, metric, direction, echo))


def refuse_distributed(num_processes: int | None = None) -> None:
    """A sweep is one process per study worker, each training its own trials: started as one of several
    processes of a distributed launch (torchrun, accelerate launch: WORLD_SIZE > 1), every process would
    ask the study for a different trial and then join the others to train it as one run, mixing the
    trials' values in one model (or hanging). Refused before anything is written."""
    world = num_processes if num_processes is not None else int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1:
        how = (
            f"--num-processes {world}"
            if num_processes is not None
            else f"a distributed launch (WORLD_SIZE={world}: torchrun / accelerate launch)"
        )
        raise UsageError(
            f"a sweep cannot run its trials across several processes, but it was started with {how}",
            hint="start `lora-adapt sweep RECIPE` without a launcher; to use several GPUs, start one sweep per "
            "GPU (CUDA_VISIBLE_DEVICES=N lora-adapt sweep RECIPE): they share the study and its budget. "
            "Train the best recipe on several GPUs afterwards: `lora-adapt run best_recipe.yaml --num-processes N`",
        )


def _one_trial(
    study, recipe: Recipe, folder: Path, inputs: TrialInputs, metric: str, worker: int, echo
) -> None:
    import optuna

    sweep = recipe.sweep
    assert sweep is not None
    trial = study.ask()
    mark_process(trial, worker)
    params = suggest(trial, sweep)
    echo(f"trial {trial.number}: {describe_params(resolve_params(recipe, sweep.space, params))}")
    earlier = earlier_trial(study, trial)
    if earlier is not None:  # not trained again, not counted: the earlier result is reused
        tell_repeat(study, trial, earlier)
        queue_untried(study, sweep)  # the next trial tries a new point, so repeats cannot go on
        echo(
            f"trial {trial.number}: the values of trial {earlier.number} again: its result "
            f"({earlier.state.name.lower()}) is reused, not trained again nor counted against the budget"
        )
        return
    twin = running_twin(study, trial)
    if twin is not None:  # another process is training this point now: not trained twice
        tell_twin(study, trial, twin)
        queue_untried(study, sweep)
        echo(
            f"trial {trial.number}: the values of trial {twin.number}, which another process is training "
            "now: not trained twice, not counted against the budget"
        )
        return
    try:
        value, _, cost = run_trial(trial, recipe, sweep, params, folder, inputs, echo)
    except optuna.TrialPruned as exc:
        _cost(trial, exc)
        trial.set_user_attr("pruned", str(exc))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        echo(f"trial {trial.number}: {exc}")
    except TrialFailed as exc:
        _cost(trial, exc)
        trial.set_user_attr("failure", str(exc))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        echo(f"trial {trial.number} failed: {exc}")
    except (KeyboardInterrupt, SystemExit):
        fail_interrupted(study, trial.number, trial.params)
        raise
    except BaseException as exc:  # a bug: record it, do not retry it, stop the sweep
        trial.set_user_attr("failure", f"error: {type(exc).__name__}: {exc}")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    else:
        trial.set_user_attr("cost", cost.record())
        trial.set_user_attr("run_dir", str(run_dir_of(folder, trial.number)))
        study.tell(trial, value)
        echo(f"trial {trial.number}: validation {metric} {value:.4f} ({cost.steps} steps)")


RECIPE_VALUES_ATTR = "recipe_values"
"""User attribute of the trial that tries the recipe's own values (``sweep.include_recipe``)."""


def _queue_recipe_values(study, recipe: Recipe) -> str:
    """Queue the recipe's own values of the searched keys as a new study's first trial (when the space
    holds them), so the sweep's best is never below the recipe the user started from, on validation;
    return what to say of it."""
    sweep = recipe.sweep
    assert sweep is not None
    point, why = recipe_point(recipe.model_dump(mode="json"), sweep)
    if point is None:
        return f"sweep: the recipe's own values are not tried as a trial: {why}"
    study.enqueue_trial(point, user_attrs={RECIPE_VALUES_ATTR: True})
    return "sweep: the first trial tries the recipe's own values (sweep.include_recipe)"


def _recipe_trial(rows: list[dict[str, Any]], best: dict[str, Any] | None, direction: str) -> dict | None:
    """The trial of the recipe's own values: its state, validation score and the best's margin over it."""
    row = next((r for r in rows if r.get("recipe_values")), None)
    if row is None:
        return None
    out = {"trial": row["trial"], "state": row["state"], "validation": row["value"]}
    if row["state"] == "COMPLETE" and best and row["value"] is not None:
        sign = 1 if direction == "maximize" else -1
        out["best_above_by"] = round(sign * (best["validation"] - row["value"]), 6)
    return out


def _discard_interrupted(study, folder: Path) -> None:
    """Remove the unfinished run directories interrupted trials left (a killed process cannot)."""
    import shutil

    for trial in study.get_trials(deepcopy=False):
        if interrupted(trial):
            unfinished = A.in_progress_dir(folder / A.SWEEP_TRIALS_DIR / trial_name(trial.number))
            shutil.rmtree(unfinished, ignore_errors=True)


def _cost(trial, exc: BaseException) -> None:
    """The cost of a trial that ended early (the reporter's record travels on the exception's context)."""
    cost = getattr(exc, "cost", None)
    if cost is not None:
        trial.set_user_attr("cost", cost.record())


def _write_tables(study, recipe: Recipe, folder: Path) -> list[dict[str, Any]]:
    rows = trial_rows(study, recipe, recipe.sweep)  # type: ignore[arg-type]
    write_tables(folder, rows, _best_number(study))
    return rows


def finish(study, recipe: Recipe, folder: Path, metric: str, direction: str, echo) -> dict[str, Any]:
    """Score the best trial's test split (once), write the best recipe, plots, tables and summary."""
    sweep = recipe.sweep
    assert sweep is not None
    rows = _write_tables(study, recipe, folder)
    summary: dict[str, Any] = {
        "name": recipe.name,
        "method": sweep.method,
        "objective": {"metric": metric, "direction": direction, "split": "validation"},
        "budget": sweep.budget.model_dump(mode="json"),
        "pruning": sweep.pruning.method,
        "space": {k: v.model_dump(mode="json", exclude_defaults=True) for k, v in sweep.space.items()},
        "counts": _counts(rows),
        "cost": _cost_summary(rows),
        "best": _best(study, recipe, folder, metric, echo),
    }
    summary["recipe_trial"] = _recipe_trial(rows, summary["best"], direction)
    summary["plots_skipped"] = write_plots(folder, study)
    write_summary(folder, summary, rows)
    best = summary["best"]
    if not best:
        ran = ", ".join(f"{n} {_STATE_WORDS.get(s, s.lower())}" for s, n in summary["counts"].items())
        echo(
            f"sweep: no trial completed yet ({ran or 'none run'}); the reasons are in {folder / A.SWEEP_TABLE_MD}"
        )
    if best:
        echo(
            f"sweep: best trial {best['trial']}: validation {metric} {best['validation']:.4f}, test "
            f"{(best.get('test') or {}).get(metric)}; best recipe {folder / A.SWEEP_BEST_RECIPE}"
        )
    own = summary["recipe_trial"]
    if own and own.get("best_above_by") is not None:
        echo(
            f"sweep: the recipe's own values (trial {own['trial']}): validation {metric} {own['validation']:.4f}; "
            f"the best is {own['best_above_by']:.4f} better"
        )
    return summary


_STATE_WORDS = {"FAIL": "failed", "REPEAT": "repeated"}


def _best(study, recipe: Recipe, folder: Path, metric: str, echo) -> dict[str, Any] | None:
    number = _best_number(study)
    if number is None:
        return None
    trial = study.trials[number]
    previous = _previous_best(folder)
    if previous and previous.get("trial") == number and previous.get("test"):
        test = previous["test"]  # already scored: the test split is scored once per best trial
    else:
        echo(f"sweep: scoring the best trial ({number}) on the test split, once")
        test = score_test(run_dir_of(folder, number), echo, metric)
    values = trial_values(trial, recipe, recipe.sweep)  # type: ignore[arg-type]
    header = [
        f"Best of sweep '{recipe.name}' ({recipe.sweep.method}, trial {number}): validation {metric} "  # type: ignore[union-attr]
        f"{trial.value:.4f}, test {metric} {test.get(metric)}",
        f"Values: {describe_params(values)}",
        "Run it: lora-adapt run best_recipe.yaml",
    ]
    write_best_recipe(folder, recipe, values, header)
    return {
        "trial": number,
        "validation": trial.value,
        "test": test,
        "values": values,
        "run_dir": str(run_dir_of(folder, number)),
        "recipe": str(folder / A.SWEEP_BEST_RECIPE),
    }


def _best_number(study) -> int | None:
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return None
    best = study.best_trial
    return repeat_of(best) if repeat_of(best) is not None else best.number  # the trial that trained


def _previous_best(folder: Path) -> dict[str, Any] | None:
    path = folder / A.SWEEP_SUMMARY
    if not path.is_file():
        return None
    return (A.read_json(path) or {}).get("best")


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return counts


def _cost_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    timed = [r for r in rows if r.get("before_first_step_s") is not None]
    later = [r["before_first_step_s"] for r in timed[1:]]
    return {
        "steps_total": sum(r["steps"] or 0 for r in rows if r["state"] != "INTERRUPTED"),
        "before_first_step_first_s": timed[0]["before_first_step_s"] if timed else None,
        "before_first_step_later_median_s": round(statistics.median(later), 2) if later else None,
    }


def _direction(direction: str, metric: str) -> Literal["minimize", "maximize"]:
    if direction in ("minimize", "maximize"):
        return direction  # type: ignore[return-value]
    return "maximize" if greater_is_better(metric) else "minimize"
