"""The Optuna study behind a sweep: SQLite storage in the sweep folder (so a sweep resumes, and several
processes can share it), the sampler and pruner the `sweep` section names, and the trial budget.

Trial states: COMPLETE, PRUNED, FAIL (with a user attribute ``failure``: the reason). A trial whose
process was interrupted (or died: found when a sweep process next opens the study) is failed without a
reason, does not count against the budget, and its parameters are queued again.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from .. import artifacts as A
from ..recipe.sweep import GRID_MAX_POINTS, SweepSpec
from ..rundir_lock import process_alive
from .space import grid_params, same_params

LOCK_TIMEOUT_S = 60
"""How long a process waits for another one's write to the shared SQLite file."""


def open_study(
    sweep: SweepSpec,
    folder: Path,
    name: str,
    direction: Literal["minimize", "maximize"],
    searched: dict[str, Any] | None = None,
    worker: int = 0,
):
    """Create or load the study in ``folder`` (its sampler seeded past the trials it already has, so a
    resumed random or TPE sweep does not repeat its first suggestions, and apart for each ``worker``:
    :func:`worker_slot`). ``searched``: what the trials depend on (:func:`searched_settings`); a study
    made for other settings is refused, not mixed in."""
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
    if searched is not None:
        _check_same_search(probe, searched, folder)
    offset = len(probe.get_trials(deepcopy=False))
    return optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=_sampler(sweep, sampler_seed(sweep.seed, offset, worker)),
        pruner=_pruner(sweep),
    )


@contextmanager
def worker_slot(folder: Path) -> Iterator[int]:
    """This process's number among the processes working on the sweep in ``folder`` now: the lowest one
    no live process holds (0 for a sweep running alone), held until the block ends (``flock`` on
    ``.worker-N.lock``; the kernel drops it when the process dies, and the file is removed on release).

    Two processes started together on one study both find it empty: with one sampler seed they would
    propose the same points. The number makes their seeds differ (:func:`sampler_seed`)."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    number = 0
    while True:
        path = folder / f".worker-{number}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            number += 1
            continue
        if _same_file(path, fd):
            break
        os.close(fd)  # its holder released (and removed) it between our open and flock: try again
    try:
        yield number
    finally:
        try:
            path.unlink()  # while still holding it, so that nobody else holds the old file
        except OSError:
            pass
        os.close(fd)


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


WORKER_SEED_STRIDE = 1 << 20
"""How far apart the sampler seeds of concurrent processes are (a study has fewer trials than this)."""


def sampler_seed(seed: int, offset: int, worker: int = 0) -> int:
    """The sampler seed of a process: the sweep seed past the study's ``offset`` trials, plus a stride
    per ``worker`` number (0 alone: a single-process sweep is seeded as it always was)."""
    return seed + offset + worker * WORKER_SEED_STRIDE


def searched_settings(recipe_dict: dict[str, Any]) -> dict[str, Any]:
    """The recipe as its trials see it: everything but `output`, the progress display and the sweep's
    budget, folder and `include_recipe` (a resumed sweep may get more trials or minutes; the recipe's
    values are queued only when a study starts; anything else changes what a trial means)."""
    kept = {k: v for k, v in recipe_dict.items() if k != "output"}
    sweep = {
        k: v for k, v in (kept.get("sweep") or {}).items() if k not in ("budget", "dir", "include_recipe")
    }
    training = {k: v for k, v in (kept.get("training") or {}).items() if k != "progress_bar"}
    return {**kept, "sweep": sweep, "training": training}


def _check_same_search(study, searched: dict[str, Any], folder: Path) -> None:
    """Record the settings of a new study; refuse to add trials of other settings to an existing one."""
    import json

    from ..errors import UsageError

    canonical = json.loads(json.dumps(searched, sort_keys=True, default=str))
    recorded = study.user_attrs.get("searched")
    if recorded is None:
        if study.get_trials(deepcopy=False):
            return  # a study from before settings were recorded: nothing to compare with
        study.set_user_attr("searched", canonical)
        return
    changed = sorted(_changed_keys(recorded, canonical))
    if changed:
        shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
        raise UsageError(
            f"the sweep in {folder} was started with other settings ({shown} differ); its trials would "
            "not be comparable with this recipe's",
            hint="give this sweep its own folder (--dir or sweep.dir, or another name), or remove the old one",
        )


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = set(old) | set(new)
        return [c for k in keys for c in _changed_keys(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]


def _sampler(sweep: SweepSpec, seed: int):
    import optuna

    if sweep.method == "bayes":
        startup = sweep.startup_trials or max(3, (sweep.budget.trials or 12) // 4)
        return optuna.samplers.TPESampler(n_startup_trials=startup, seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)  # grid trials are all queued


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


def mark_process(trial, worker: int = 0) -> None:
    """Record which process runs ``trial`` (to tell a live trial from one whose process died), and its
    worker number (:func:`worker_slot`: the per-process part of the sampler seed)."""
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("worker", worker)


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
        if attrs.get("host") == socket.gethostname() and not process_alive(attrs.get("pid")):
            fail_interrupted(study, trial.number, trial.params)
            dead += 1
    return dead


def interrupted(trial) -> bool:
    """A trial failed without a reason of its own: its process was interrupted or died."""
    import optuna

    return trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs.get("failure") is None


def repeat_of(trial) -> int | None:
    """The earlier trial whose result a repeat reused (:func:`earlier_trial`), or None."""
    return trial.user_attrs.get("repeat_of")


def counted(study) -> int:
    """Trials that count against the budget: finished (not interrupted, not a repeat) or running."""
    return sum(1 for t in _tried(study) if repeat_of(t) is None)


def _tried(study) -> list:
    """Trials finished (not interrupted) or running."""
    import optuna

    states = (
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.FAIL,
        optuna.trial.TrialState.RUNNING,
    )
    return [t for t in study.get_trials(deepcopy=False, states=states) if not interrupted(t)]


def earlier_trial(study, trial):
    """A finished trial (completed, pruned or failed with a reason; not itself a repeat) with ``trial``'s
    parameters, or None. Optuna's recommended way to skip a duplicated point (FAQ, "How can I ignore
    duplicated samples?"): reuse the earlier trial's result instead of evaluating the point again."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    for t in study.get_trials(deepcopy=False, states=states):
        if (
            t.number != trial.number
            and not interrupted(t)
            and repeat_of(t) is None
            and same_params(t.params, trial.params)
        ):
            return t
    return None


def running_twin(study, trial):
    """A trial with ``trial``'s parameters that another live process (or another machine) is training right
    now, or None. Two processes sharing a study can be given the same point (a grid whose every point has
    started hands out running ones again; a queued retry; a sampler's repeat): the second must not train it
    twice. A twin whose process on this machine is gone is no twin: the point is trained here."""
    import optuna

    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.number == trial.number or not same_params(t.params, trial.params):
            continue
        attrs = t.user_attrs
        if attrs.get("host") == host and not process_alive(attrs.get("pid")):
            continue
        return t
    return None


def tell_twin(study, trial, twin) -> None:
    """Finish ``trial`` untrained because ``twin`` (another process) is training the same point: a repeat
    of it, failed with that reason so no sampler learns from it; not counted against the budget."""
    import optuna

    trial.set_user_attr("repeat_of", twin.number)
    trial.set_user_attr("running_twin", True)
    trial.set_user_attr("failure", f"trial {twin.number} was training these values in another process")
    study.tell(trial, state=optuna.trial.TrialState.FAIL)


def tell_repeat(study, trial, earlier) -> None:
    """Finish ``trial`` with ``earlier``'s result, untrained: its value (COMPLETE), its intermediate
    values (PRUNED) or its failure (FAIL); it does not count against the budget."""
    import optuna

    trial.set_user_attr("repeat_of", earlier.number)
    state = earlier.state
    if state == optuna.trial.TrialState.COMPLETE:
        study.tell(trial, earlier.value)
        return
    if state == optuna.trial.TrialState.PRUNED:
        for step, value in sorted(earlier.intermediate_values.items()):
            trial.report(value, step)
        trial.set_user_attr("pruned", earlier.user_attrs.get("pruned", "pruned"))
    else:
        trial.set_user_attr("failure", earlier.user_attrs.get("failure", "failed"))
    study.tell(trial, state=state)


def queue_grid(study, sweep: SweepSpec) -> int:
    """Queue every grid point no trial covers yet (finished, running or waiting, interrupted ones aside);
    return the grid size."""
    points = grid_params(sweep)
    for point in _uncovered(study, points):
        study.enqueue_trial(point)
    return len(points)


def queue_untried(study, sweep: SweepSpec) -> bool:
    """Queue one point of a finite space that no trial covers yet (in the grid's seeded order), so that a
    sampler proposing points already tried (a repeat) cannot keep the sweep from the rest of the space;
    False when there is none (or the space is too large to list, where repeats are rare)."""
    size = sweep.grid_size()
    if size is None or size > GRID_MAX_POINTS:
        return False
    for point in _uncovered(study, grid_params(sweep)):
        study.enqueue_trial(point)
        return True
    return False


def _uncovered(study, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    covered = [
        t.params or t.system_attrs.get("fixed_params") or {}
        for t in study.get_trials(deepcopy=False)
        if not interrupted(t)
    ]
    return [point for point in points if not any(same_params(point, c) for c in covered if c)]


def exhausted(study, sweep: SweepSpec) -> bool:
    """Every point of a finite space (every key a list of values, or a stepped range) has been tried by a
    trial finished or running: the sweep stops there (a further trial could only repeat a point) instead
    of repeating points until its minutes are spent."""
    size = sweep.grid_size()
    if size is None:
        return False
    tried = [t.params for t in _tried(study) if t.params]
    if len(tried) < size:  # fewer trials than points: no need to list the points
        return False
    return all(any(same_params(point, p) for p in tried) for point in grid_params(sweep))
