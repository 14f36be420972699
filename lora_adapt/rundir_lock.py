"""One writer per run directory: an OS-level lock held for a run's whole life, and what a new run may do
with a finished or interrupted run of the same name (no torch).

    with claim_run(final, resume=False, overwrite=False, echo=print) as claim:
        ...  # load, train into A.in_progress_dir(final), evaluate, rename, publish

The lock is ``flock`` on ``<output.dir>/.<name>.lock`` (beside the run): the kernel drops it when the
holder exits, however it exits, so a crashed run never blocks the next one; the file records who held
it (pid, host, command, start time), so a second run on a locked name is refused naming the holder, and
a file left by a killed run is recognised as stale and said so. Only the main process of a distributed
run takes it (the others never write the run directory).

What a claim decides before anything heavy is loaded:
  - the output folder exists (created) and is writable, else a clear error (exit 1);
  - a finished run is replaced only with ``overwrite`` (exit 2 otherwise);
  - an interrupted run (``<name>.incomplete/`` with its checkpoints) is continued with ``resume``,
    discarded only with ``overwrite``, and otherwise kept and the new run refused (exit 2) with the
    command that resumes it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import artifacts as A
from .artifacts import process_alive
from .errors import LoraAdaptError, RunExistsError, RunLockedError, UsageError

Echo = Callable[[str], None]
LOCK_SUFFIX = ".lock"


@dataclass(frozen=True)
class Claim:
    """What a run may do with its directory; ``resuming`` is False when there was nothing to resume."""

    final: Path
    stage: Path
    resuming: bool
    lock: Path | None  # None in processes other than the main one


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def lock_path(final: Path) -> Path:
    return final.with_name(f".{final.name}{LOCK_SUFFIX}")


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a torchrun / accelerate launch (``RANK`` set by both)."""
    return os.environ.get("RANK", "0") == "0"


@contextmanager
def claim_run(
    final: Path, *, resume: bool, overwrite: bool, echo: Echo, main_process: bool | None = None
) -> Iterator[Claim]:
    """Lock ``final``'s name for the block and settle what happens to an existing run of that name."""
    final = Path(final)
    stage = A.in_progress_dir(final)
    if not (is_main_process() if main_process is None else main_process):
        yield Claim(final, stage, resume and stage.is_dir(), None)
        return
    created = not final.parent.exists()
    ensure_writable_dir(final.parent, "output.dir")
    fd = acquire_lock(final, echo)
    try:
        resuming = _settle_existing(final, stage, resume=resume, overwrite=overwrite, echo=echo)
        yield Claim(final, stage, resuming, lock_path(final))
    finally:
        release_lock(final, fd)
        if created:  # a run that failed before writing anything leaves no empty output folder behind
            try:
                final.parent.rmdir()
            except OSError:
                pass


def _settle_existing(final: Path, stage: Path, *, resume: bool, overwrite: bool, echo: Echo) -> bool:
    """Refuse or clear what stands in the way; True when an interrupted run will be continued."""
    hint = "pass --overwrite (or output.overwrite: true), or choose another --output-dir or name"
    restored = A.recover_replaced(final)  # an --overwrite killed midway: the old run is back at `final`
    if restored:
        echo(f"note: {restored}")
    if final.exists() and not overwrite:
        if resume:
            raise RunExistsError(f"nothing to resume: the run at {final} already finished", hint=hint)
        raise RunExistsError(f"a finished run already exists at {final}", hint=hint)
    if not stage.exists():
        if resume:
            echo(f"note: no interrupted run at {stage}; starting from the beginning")
        return False
    if resume:
        return True
    if overwrite:
        echo(f"note: discarding the interrupted run at {stage} (--overwrite)")
        shutil.rmtree(stage)
        return False
    checkpoints = describe_checkpoints(stage / A.CHECKPOINTS_DIR)
    diverged = _divergence_note(stage)
    raise RunExistsError(
        f"an interrupted run of this name is at {stage} ({checkpoints}){diverged}; it was kept",
        hint="continue it with the same command plus --resume, or pass --overwrite to discard it and start over",
    )


def _divergence_note(stage: Path) -> str:
    """ ", stopped because training diverged at step N (see .../divergence.json)" when it was."""
    try:
        record = A.read_json(stage / A.DIVERGENCE)
    except (OSError, ValueError):
        return ""
    step = record.get("step") if isinstance(record, dict) else None
    return f"; it was stopped because training diverged at step {step} (see {stage / A.DIVERGENCE})"


def describe_checkpoints(folder: Path) -> str:
    names = sorted(
        (p.name for p in folder.glob("checkpoint-*") if p.is_dir()),
        key=lambda n: int(n.rsplit("-", 1)[-1]) if n.rsplit("-", 1)[-1].isdigit() else -1,
    )
    return f"checkpoints: {', '.join(names)}" if names else "no checkpoint yet"


# --- the lock --------------------------------------------------------------------------------------


def acquire_lock(final: Path, echo: Echo) -> int:
    """Take the exclusive lock on ``final``'s name (non-blocking) and record this process as its holder."""
    import fcntl

    path = lock_path(final)
    while True:
        fd = _open_lock_file(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLockedError(
                f"another run is writing {final}: {_describe_holder(holder)} holds {path}",
                hint="wait for it to finish, or give this run another name or --output-dir",
            ) from None
        if _still_at(path, fd):
            break
        os.close(fd)  # the holder finished and removed the file between our open and flock: retry
    stale = _read_holder(fd)
    if stale:
        echo(
            f"note: stale lock {path} from {_describe_holder(stale)}, "
            f"{'which is no longer running' if not _alive(stale) else 'which no longer holds it'}; "
            "that run was killed - taking over"
        )
    _write_holder(fd)
    return fd


def release_lock(final: Path, fd: int) -> None:
    """Remove the lock file (while still holding it, so nobody else can lock the old file), then unlock."""
    path = lock_path(final)
    try:
        if _still_at(path, fd):
            path.unlink()
    except OSError:
        pass
    finally:
        os.close(fd)


def _open_lock_file(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except FileNotFoundError:  # another run removed the (empty) output folder it had created: recreate it
        ensure_writable_dir(path.parent, "output.dir")
        return _open_lock_file(path)
    except OSError as exc:
        raise _unwritable(path.parent, exc, "output.dir") from None


def _still_at(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _read_holder(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, 64 * 1024)
    try:
        holder = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"pid": None}
    return holder if isinstance(holder, dict) else {"pid": None}


def _write_holder(fd: int) -> None:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:300],
        "started_utc": utc_now(),
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(holder) + "\n").encode("utf-8"))


def _describe_holder(holder: dict[str, Any]) -> str:
    if not holder.get("pid"):
        return "another process"
    where = f" on {holder['host']}" if holder.get("host") and holder["host"] != socket.gethostname() else ""
    command = f" ({holder['command']})" if holder.get("command") else ""
    since = f" since {holder['started_utc']}" if holder.get("started_utc") else ""
    return f"process {holder['pid']}{command}{where}{since}"


def _alive(holder: dict[str, Any]) -> bool:
    if holder.get("host") not in (None, socket.gethostname()):
        return False
    return process_alive(holder.get("pid"))


# --- the output folder -----------------------------------------------------------------------------


def ensure_writable_dir(folder: Path, origin: str) -> None:
    """Create ``folder`` if needed and check that files can be created in it (before anything heavy)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise LoraAdaptError(
            f"{origin} {folder} exists but is not a folder",
            hint="remove or rename that file, or choose another --output-dir",
        ) from None
    except OSError as exc:
        raise _unwritable(folder, exc, origin) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _unwritable(folder, PermissionError(errno.EACCES, "Permission denied"), origin)


def _unwritable(folder: Path, exc: OSError, origin: str) -> LoraAdaptError:
    if isinstance(exc, NotADirectoryError):
        return LoraAdaptError(
            f"{origin} {folder} is inside a file, not a folder",
            hint="choose another --output-dir",
        )
    reason = "read-only file system" if exc.errno == errno.EROFS else (exc.strerror or str(exc)).lower()
    return LoraAdaptError(
        f"cannot write the run into {origin} {folder}: {reason}",
        hint="choose a writable --output-dir (or output.dir), or fix the folder's permissions",
    )


# --- the interrupted run's record ------------------------------------------------------------------
# Written into the staging folder's checkpoints/ when training starts (discarded with the checkpoints
# when the run finishes): the recipe and data a resume must match, and every resume so far.

RUN_START = "run_start.json"
UNCHECKED = "recipe_unchecked"
"""Key of a start record written by a resume that had no record to check its recipe against (--resume-unchecked)."""


def resumable_start(
    stage: Path, recipe: dict[str, Any], echo: Echo, *, unchecked: bool = False
) -> dict[str, Any] | None:
    """The interrupted run's start record, checked against ``recipe`` (resolved, as JSON data): a change to
    anything that affects training is refused, naming each key. Checkpoints without a record are refused
    too (nothing says what recipe they were trained with), unless ``unchecked``: the new record then says so."""
    from .recipe.resume import describe_changes, training_changes

    started = read_start(stage)
    if started is None:
        return _unrecorded_start(stage, echo, unchecked=unchecked)
    changes = training_changes(started["recipe"], recipe)
    if changes:
        raise UsageError(
            f"--resume with a changed recipe: {describe_changes(changes)}; the interrupted run continues "
            "with its checkpoint's optimizer, schedule and data order, so these would be recorded but "
            "not happen",
            hint=f"resume with the values the run started with (in {stage / A.CHECKPOINTS_DIR / RUN_START}), "
            "or pass --overwrite to start over with the new ones",
        )
    return started


def _unrecorded_start(stage: Path, echo: Echo, *, unchecked: bool) -> dict[str, Any] | None:
    """A resume with no start record: nothing to check when there is no checkpoint either (training starts
    over, and its record will be a true start); else refused, or with ``unchecked`` the seed of a record
    marked unchecked."""
    record = stage / A.CHECKPOINTS_DIR / RUN_START
    folder = stage / A.CHECKPOINTS_DIR
    if not (folder.is_dir() and any(p.is_dir() for p in folder.glob("checkpoint-*"))):
        echo(f"note: {stage} holds no checkpoint and no record of its recipe; training from the start")
        return None
    why = f"{record} is missing or unreadable"
    if not unchecked:
        raise UsageError(
            f"--resume: the interrupted run at {stage} ({describe_checkpoints(folder)}) has no record of the "
            f"recipe its checkpoints were trained with ({why}), so a change to it cannot be refused",
            hint="pass --overwrite to start over, or --resume-unchecked to continue it with this recipe "
            "unchecked (the run records that it was not checked)",
        )
    echo(f"note: resuming without checking the recipe ({why}; --resume-unchecked): recorded as unchecked")
    return {UNCHECKED: f"no record of the recipe the checkpoints were trained with at a resume ({why})"}


def start_record(
    stage: Path,
    recipe: dict[str, Any],
    data_files: dict[str, str],
    started: dict[str, Any] | None,
    resolved: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The interrupted run's record when resuming (its data files and ``resolved`` checked), else a new one
    (marked unchecked when ``started`` is the seed of :func:`resumable_start` for an unchecked resume).

    ``resolved``: settings whose ``auto`` resolves from the training data (dotted key -> what it resolved
    to), which comparing recipes cannot check: the same recipe and data resolve the same way unless the
    rule changed between the versions that started and resumed the run."""
    resolved = resolved or {}
    if started is None or "recipe" not in started:
        return _write_start(
            stage,
            {
                **(started or {}),
                "recipe": recipe,
                "data_files": data_files,
                "resolved": resolved,
                "resumes": [],
            },
        )
    before = started.get("data_files") or {}
    changed = sorted(f for f in {*data_files, *before} if data_files.get(f) != before.get(f))
    if changed:
        raise UsageError(
            f"--resume with changed data: {', '.join(changed)} differ from when the run started",
            hint="restore the files the run started with, or pass --overwrite to start over on the new data",
        )
    then = started.get("resolved") or {}  # a record written before resolved settings were kept: nothing
    differ = [
        f"{k} ({then[k]} -> {resolved[k]})" for k in sorted(resolved) if k in then and then[k] != resolved[k]
    ]
    if differ:
        raise UsageError(
            f"--resume: {', '.join(differ)}: on the same recipe and data, `auto` now resolves differently "
            "from when the run started (another version of lora-adapt), so the loss would change mid-run",
            hint="resume with the version that started the run, or pass --overwrite to start over",
        )
    return started


def record_resume(stage: Path, record: dict[str, Any], checkpoint: Path) -> dict[str, Any]:
    """Append this resume (from ``checkpoint-N``) to the record."""
    step = int(checkpoint.name.rsplit("-", 1)[-1])
    entry: dict[str, Any] = {"from_step": step, "checkpoint": checkpoint.name, "utc": utc_now()}
    if UNCHECKED in record and not record.get("resumes"):
        entry["recipe_checked"] = False  # the resume that found no record: its recipe became the record
    resumes = [*record.get("resumes", []), entry]
    return _write_start(stage, {**record, "resumes": resumes})


def read_start(stage: Path) -> dict[str, Any] | None:
    try:
        record = A.read_json(stage / A.CHECKPOINTS_DIR / RUN_START)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("recipe"), dict) else None


def _write_start(stage: Path, record: dict[str, Any]) -> dict[str, Any]:
    record = {"started_utc": utc_now(), **record}
    if is_main_process():  # the other processes of a distributed run keep the record in memory only
        A.atomic_write_json(stage / A.CHECKPOINTS_DIR / RUN_START, record)
    return record
