"""One run on several processes: who does what, and how a failure on one process stops them all.

Any launcher works (`lora-adapt run --num-processes N`, `accelerate launch -m lora_adapt run`, `torchrun`):
the processes join the launcher's process group through accelerate's ``PartialState``. The pipeline calls
this module at a few points:

- ``ranks.on_main(phase, fn)``: only the main process runs ``fn`` (checking and publishing the run);
- ``ranks.main_first(phase, fn)``: the main process runs ``fn`` first, the others after it succeeded
  (loading the model and preparing the data, which is deterministic on every process);
- ``ranks.together(phase, fn)``: every process runs ``fn``, which talks to the others (training);
- ``with ranks.staged_dir(final)``: only the main process creates, writes and renames the run directory
  (the Trainer of every process writes its own RNG state into the checkpoints inside it).

Each call ends with an agreement: the processes exchange whether they succeeded, over a gloo group of
their own (its timeout is long: the others wait while the main process evaluates). A process that fails
records its error in the launcher's key-value store (the first record wins), so every process stops with
the first failing process's message and exit code and the run directory stays ``<name>.incomplete``. A
process that fails inside collective work (training) does not wait for an agreement the others cannot
reach: it leaves, and the others, whose next collective fails, read the recorded error.

One process (no ``WORLD_SIZE`` above 1) skips all of this: every call just runs ``fn``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from .. import artifacts as A
from ..errors import DistributedRunError, LoraAdaptError
from ..recipe.schema import Recipe
from .checks import check_launch

T = TypeVar("T")
AGREEMENT_TIMEOUT = timedelta(hours=48)  # the others wait this long for the main process's evaluation
FAREWELL_TIMEOUT = timedelta(seconds=60)  # a quiet process waits this long for the main one to leave
_runs_joined = 0  # per process: one error key per run when a process runs several (a sweep)


@dataclass(frozen=True)
class Failure:
    """What the first failing process recorded."""

    rank: int
    phase: str
    message: str
    hint: str | None
    exit_code: int


class Ranks:
    """This process's place in the run. ``Ranks()`` is a run in one process."""

    def __init__(
        self, rank: int = 0, world_size: int = 1, groups: tuple[Any, Any] = (None, None), key: str = ""
    ):
        self.rank, self.world_size, self._key = rank, world_size, key
        self.group, self._farewell = groups  # agreements; waiting for the main process to leave

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def main_echo(self, echo: Callable[[str], None]) -> Callable[[str], None]:
        """``echo`` on the main process; the others stay quiet (their output would repeat the main's)."""
        return echo if self.is_main else _quiet

    def on_main(self, phase: str, fn: Callable[[], T]) -> T | None:
        """Run ``fn`` on the main process only; every process learns whether it succeeded."""
        if not self.distributed:
            return fn()
        result, error = _attempt(fn) if self.is_main else (None, None)
        self._agree(phase, error)
        return result

    def main_first(self, phase: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the main process, then (if it succeeded) on the others."""
        if not self.distributed:
            return fn()
        if self.is_main:
            result, error = _attempt(fn)
            self._agree(phase, error)
            self._agree(phase, None)
            return result  # type: ignore[return-value]  # _agree raised if fn failed
        self._agree(phase, None)
        result, error = _attempt(fn)
        self._agree(phase, error)
        return result  # type: ignore[return-value]

    def together(self, phase: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` on every process; ``fn`` communicates with the others (training, gathering weights)."""
        if not self.distributed:
            return fn()
        try:
            result = fn()
        except Exception as exc:
            raise self._error(self._record(phase, exc), abandoned=True) from exc
        self._agree(phase, None)
        return result

    @contextmanager
    def staged_dir(self, final: Path) -> Iterator[Path]:
        """``artifacts.staged_dir`` on the main process; the others get its path and never create, lock,
        clean or rename it. The block's end is an agreement: the run is finished on every process or on none."""
        if not self.distributed:
            with A.staged_dir(final) as stage:
                yield stage
            return
        stage = A.in_progress_dir(final)
        self.on_main("creating the run directory", lambda: stage.mkdir(parents=True, exist_ok=True))
        if self.is_main:
            # the agreement comes before the rename: a run is renamed only when every process succeeded
            with A.staged_dir(final) as stage, self._concluded("writing the run"):
                yield stage
        else:
            with self._concluded("writing the run"):
                yield stage

    # --- agreement --------------------------------------------------------------------------------

    @contextmanager
    def _concluded(self, phase: str) -> Iterator[None]:
        try:
            yield
        except DistributedRunError:
            raise  # already agreed, or abandoned (the others learn of it when this process leaves)
        except Exception as exc:
            self._agree(phase, exc)
            raise
        self._agree(phase, None)

    def _agree(self, phase: str, error: Exception | None) -> None:
        """Every process says whether it succeeded; if any failed, all raise the first failure."""
        import torch.distributed as dist

        mine = self._record(phase, error) if error is not None else None
        statuses: list[Any] = [None] * self.world_size
        try:
            dist.all_gather_object(statuses, asdict(mine) if mine else None, group=self.group)
        except Exception as exc:  # another process left without agreeing: it failed inside collective work
            raise self._error(self._record(phase, exc), abandoned=True) from exc
        failures = [Failure(**status) for status in statuses if status]
        if failures:
            error_out = self._error(self._first_failure() or failures[0], abandoned=False)
            if error_out.reported_elsewhere:
                self._outlive_main()
            raise error_out from error

    def _outlive_main(self) -> None:
        """Wait until the main process, which prints the run's error, has left: launchers stop every process
        as soon as one exits, and a quiet process leaving first could cut the main one off before it prints.
        The main process never joins this collective; it fails when the main process exits (or, if the
        main process goes on, say in a sweep that catches the error, after FAREWELL_TIMEOUT)."""
        import torch.distributed as dist

        try:
            dist.all_gather_object([None] * self.world_size, None, group=self._farewell)
        except Exception:
            return

    def _record(self, phase: str, error: Exception) -> Failure:
        """Record ``error`` as the run's first failure unless another process recorded one before."""
        mine = _failure(self.rank, phase, error)
        store = _store()
        if store is None:
            return mine
        try:
            current = store.compare_set(self._key, "", json.dumps(asdict(mine)))
            return Failure(**json.loads(current))
        except Exception:  # the store went away with the process that hosted it
            return mine

    def _first_failure(self) -> Failure | None:
        store = _store()
        try:
            return Failure(**json.loads(store.get(self._key))) if store is not None else None
        except Exception:
            return None

    def _error(self, first: Failure, *, abandoned: bool) -> DistributedRunError:
        origin = first.rank == self.rank
        message = (
            first.message
            if first.rank == 0
            else f"rank {first.rank} of {self.world_size} failed while {first.phase}: {first.message}"
        )
        error = DistributedRunError(message, first.hint, first.exit_code, abandoned=abandoned)
        # The main process prints the run's error; the process that failed prints its own when it leaves
        # without an agreement (the launcher may stop the main process before it can).
        error.reported_elsewhere = not (self.is_main or (origin and abandoned))
        return error


def join(recipe: Recipe, *, device: str, world_size: int, dtype: str, precision: str, echo) -> Ranks:
    """This process's ``Ranks``: checks the launch and joins the launcher's process group when there are
    several processes (``WORLD_SIZE`` > 1); ``Ranks()`` otherwise."""
    if world_size <= 1:
        if "distributed" in recipe.model_fields_set:
            echo(f"note: one process: distributed.strategy '{recipe.distributed.strategy}' is not used")
        return Ranks()
    problem = _attempt(
        lambda: check_launch(recipe, device=device, world_size=world_size, dtype=dtype, precision=precision)
    )[1]
    if problem is None:
        _announce_strategy(recipe)
    ranks = _connect("cpu" if problem else device)  # a refused launch still agrees, over gloo, to stop
    ranks.on_main("checking the launch", lambda: _raise(problem))
    return ranks


def _connect(device: str) -> Ranks:
    global _runs_joined
    import torch.distributed as dist
    from accelerate import PartialState

    state = PartialState(cpu=device == "cpu")
    groups = (
        dist.new_group(backend="gloo", timeout=AGREEMENT_TIMEOUT),
        dist.new_group(backend="gloo", timeout=FAREWELL_TIMEOUT),
    )
    _runs_joined += 1
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return Ranks(
        state.process_index, state.num_processes, groups, f"lora_adapt/{restart}/{_runs_joined}/error"
    )


def _announce_strategy(recipe: Recipe) -> None:
    """What accelerate and transformers read from the environment before the Trainer exists: FSDP's
    CPU-RAM-efficient loading happens inside ``from_pretrained`` (as `accelerate launch` would set it)."""
    if recipe.distributed.strategy == "fsdp":
        os.environ["ACCELERATE_USE_FSDP"] = "true"
        os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = str(recipe.distributed.fsdp.cpu_ram_efficient_loading)


def _failure(rank: int, phase: str, error: Exception) -> Failure:
    if isinstance(error, LoraAdaptError):
        return Failure(rank, phase, error.message, error.hint, error.exit_code)
    text = str(error).strip()
    return Failure(rank, phase, f"{type(error).__name__}: {text}" if text else type(error).__name__, None, 1)


def _store():
    """The launcher's key-value store (torchrun's agent store, or the one `init_process_group` made).
    torch has no public accessor for it; without it every process still stops, with a vaguer message."""
    try:
        from torch.distributed import distributed_c10d

        return distributed_c10d._get_default_store()
    except Exception:
        return None


def _attempt(fn: Callable[[], T]) -> tuple[T | None, Exception | None]:
    try:
        return fn(), None
    except Exception as exc:
        return None, exc


def _raise(error: Exception | None) -> None:
    if error is not None:
        raise error


def _quiet(_: str) -> None:
    return None
