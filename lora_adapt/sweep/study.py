"""The Optuna study behind a sweep: SQLite storage in the sweep folder (so a sweep resumes, and several
processes can share it), the sampler and pruner the `sweep` section names, and the trial budget.

Trial states: COMPLETE, PRUNED, FAIL (with a user attribute ``failure``: the reason). A trial whose
process was interrupted (or died: found when a sweep process next opens the study) is failed without a
reason, does not count against the budget, and its parameters are queued again.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from .. import artifacts as A
from ..recipe.sweep import SweepSpec
from .space import grid_params, same_params

LOCK_TIMEOUT_S = 60
"""How long a process waits for another one's write to the shared SQLite file."""


def open_study(sweep: SweepSpec, folder: Path, name: str, direction: Literal["minimize", "maximize"]):
    """Create or load the study in ``folder`` (its sampler seeded past the trials it already has, so a
    resumed random or TPE sweep does not repeat its first suggestions)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{folder / A.SWEEP_STUDY}",
        engine_kwargs={"connect_args": {"timeout": LOCK_TIMEOUT_S}},
    )
    probe = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True)
    if probe.direction.name.lower() != direction:
        from ..errors import UsageError

        raise UsageError(
            f"the sweep in {folder} {probe.direction.name.lower()}s its objective; this recipe asks to {direction}",
            hint="use another sweep.dir for a different objective",
        )
    offset = len(probe.get_trials(deepcopy=False))
    return optuna.load_study(
        study_name=name, storage=storage, sampler=_sampler(sweep, offset), pruner=_pruner(sweep)
    )


def _sampler(sweep: SweepSpec, offset: int):
    import optuna

    if sweep.method == "bayes":
        startup = sweep.startup_trials or max(3, (sweep.budget.trials or 12) // 4)
        return optuna.samplers.TPESampler(n_startup_trials=startup, seed=sweep.seed + offset)
    return optuna.samplers.RandomSampler(seed=sweep.seed + offset)  # grid trials are all queued


def _pruner(sweep: SweepSpec):
    import optuna

    p = sweep.pruning
    if p.method == "median":
        # steps are evaluation numbers from 1: a trial may be pruned at evaluation warmup + 1
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_evaluations + 1
        )
    if p.method == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if p.method == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def mark_process(trial) -> None:
    """Record which process runs ``trial`` (to tell a live trial from one whose process died)."""
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())


def fail_interrupted(study, trial_number: int, params: dict[str, Any]) -> None:
    """Fail a running trial as interrupted (a FAIL without a recorded reason) and queue its parameters
    again."""
    import optuna

    study.tell(trial_number, state=optuna.trial.TrialState.FAIL)
    if params:
        study.enqueue_trial(params, user_attrs={"retry_of": trial_number})


def fail_dead_trials(study) -> int:
    """Fail (as interrupted, queued again) running trials whose process on this host is gone."""
    import optuna

    dead = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("host") == socket.gethostname() and not _alive(attrs.get("pid")):
            fail_interrupted(study, trial.number, trial.params)
            dead += 1
    return dead


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def interrupted(trial) -> bool:
    """A trial failed without a reason of its own: its process was interrupted or died."""
    import optuna

    return trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs.get("failure") is None


def counted(study) -> int:
    """Trials that count against the budget: finished (not interrupted) or running."""
    import optuna

    states = (
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.FAIL,
        optuna.trial.TrialState.RUNNING,
    )
    return sum(1 for t in study.get_trials(deepcopy=False, states=states) if not interrupted(t))


def queue_grid(study, sweep: SweepSpec) -> int:
    """Queue every grid point no trial covers yet (finished, running or waiting, interrupted ones aside);
    return the grid size."""
    covered = [
        t.params or t.system_attrs.get("fixed_params") or {}
        for t in study.get_trials(deepcopy=False)
        if not interrupted(t)
    ]
    points = grid_params(sweep)
    for point in points:
        if not any(same_params(point, c) for c in covered if c):
            study.enqueue_trial(point)
    return len(points)
