"""The run directory is a contract: its names live here and tests assert the exact file set.

No torch import here (``lora-adapt validate`` must stay fast)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import UsageError

RESOLVED_RECIPE = "recipe.resolved.yaml"
MANIFEST = "manifest.json"
METRICS = "metrics.json"
REPORT = "report.md"
ADAPTER_DIR = "adapter"
MODEL_CARD = "README.md"
MERGED_DIR = "merged"
CHECKPOINTS_DIR = "checkpoints"  # only inside the in-progress directory; removed on success
CONFUSION_PNG = "confusion_matrix.png"
LEARNING_CURVES_PNG = "learning_curves.png"  # training/validation loss and the watched validation metric
LOGS_DIR = "logs"
DIVERGENCE = "divergence.json"  # in the in-progress directory of a run stopped for a non-finite step

# Files every finished run has (task-specific extras: CONFUSION_PNG, LOGS_DIR, MERGED_DIR).
RUN_FILES = frozenset(
    {RESOLVED_RECIPE, MANIFEST, METRICS, REPORT, MODEL_CARD, ADAPTER_DIR, LEARNING_CURVES_PNG}
)

# A sweep folder (`lora-adapt sweep`): the Optuna study, one run directory per trial, and the results.
SWEEP_STUDY = "study.db"  # SQLite: trials, parameters, intermediate and final values (resumable, shareable)
SWEEP_TRIALS_DIR = "trials"  # trials/trial-0007/ is a normal run directory (scored on validation)
SWEEP_TABLE_CSV = "trials.csv"
SWEEP_TABLE_MD = "trials.md"
SWEEP_BEST_RECIPE = "best_recipe.yaml"  # runnable: the recipe with the best trial's values
SWEEP_SUMMARY = "sweep.json"  # best trial, its validation and test scores, counts, costs
SWEEP_REPORT = "report.md"
SWEEP_PLOTS = ("optimization_history.png", "param_importances.png", "parallel_coordinate.png")

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_RECORD = (
    "lora_adapt.json"  # in adapter/: task, head, labels, pooling, base identity (self-describing)
)

# Written by `lora-adapt merge` / `export` next to what they produce (and read by the model card).
MERGE_VERIFICATION = "merge_verification.json"
EXPORT_REPORT = "export_report.json"

IN_PROGRESS_SUFFIX = ".incomplete"


def run_dir(output_dir: Path, name: str) -> Path:
    return Path(output_dir) / name


def in_progress_dir(final: Path) -> Path:
    """Where a run is written until it finishes; renamed to ``final`` at the very end."""
    return final.with_name(final.name + IN_PROGRESS_SUFFIX)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_chunks(path, [text])


def atomic_write_chunks(path: Path, chunks: Iterable[str]) -> int:
    """Write ``chunks`` (consumed as they come: a generator may compute them) to a temporary file beside
    ``path``, then rename it into place: ``path`` is whole or untouched, whatever stops the writer. The
    file follows the umask. Returns the number of chunks written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    count = 0
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; a run's files follow the umask
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for chunk in chunks:
                f.write(chunk)
                count += 1
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield ``<final>.incomplete``, which becomes ``final`` only if the block finishes.

    An interrupted block leaves the staging folder in place (``--resume`` continues from its
    checkpoints), never something that looks like a finished run. The caller decides beforehand
    whether an existing ``final`` may be replaced."""
    stage = in_progress_dir(Path(final))
    stage.mkdir(parents=True, exist_ok=True)
    yield stage
    follow_umask(stage)
    replace_dir(stage, Path(final))


@contextmanager
def staged_output(
    out_dir: Path,
    *,
    overwrite: bool,
    keep: Sequence[Path] = (),
    echo: Callable[[str], None] = lambda _: None,
) -> Iterator[Path]:
    """Yield a hidden sibling folder (``.<name>.<host>-<pid>-<random>.partial``) that becomes ``out_dir``
    only if the block finishes; a failed block leaves nothing behind (for outputs that cannot be resumed:
    merges, exports). One a killed process left is removed by the next call for the same ``out_dir``
    (:func:`remove_stale_partials`, said through ``echo``). ``out_dir`` is checked first
    (:func:`check_output`): what it would replace must be an earlier output of ours."""
    for note in remove_stale_partials(Path(out_dir).resolve()):
        echo(note)
    out_dir = check_output(out_dir, overwrite=overwrite, keep=keep)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out_dir.name}.{host_tag()}-{os.getpid()}-"
    stage = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=prefix, suffix=PARTIAL_SUFFIX))
    stage.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    follow_umask(stage)
    replace_dir(stage, out_dir)


PARTIAL_SUFFIX = ".partial"


def remove_stale_partials(out_dir: Path) -> list[str]:
    """Remove the staging folders of :func:`staged_output` for ``out_dir`` whose process is gone (killed
    mid-write); one of a process still running, or made on another machine (a shared disk), is left. A
    staging folder of an older lora-adapt (no owner in its name) is left and said: nothing tells whether
    its writer still runs. Returns a note per folder."""
    owner = r"(?:(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-)?"  # absent in an older lora-adapt's
    pattern = re.compile(rf"^\.{re.escape(out_dir.name)}\.{owner}[a-z0-9_]+{re.escape(PARTIAL_SUFFIX)}$")
    notes = []
    for path in _siblings(out_dir):
        match = pattern.match(path.name)
        if match is None or not path.is_dir() or path.is_symlink():
            continue
        if match["pid"] is None:
            notes.append(
                f"note: {path} is an unfinished output of an older lora-adapt, left in place: delete it "
                f"unless a merge, export or compose into {out_dir.name} is still running"
            )
        elif match["host"] == host_tag() and not _other_process_alive(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)
            notes.append(
                f"note: removed {path}, left by an earlier command that was stopped (process {match['pid']})"
            )
    return notes


SCRATCH = re.compile(r"^lora-adapt-[a-z]+(?:-[a-z]+)*-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[a-z0-9_]+$")
"""A scratch folder's name (:func:`scratch_folder`): ``lora-adapt-<kind>-<host>-<pid>-<random>``."""


def scratch_folder(kind: str) -> Path:
    """A new folder in the system temp folder (``TMPDIR``) for this process's scratch files of one
    ``kind`` (prepared Arrow rows, a full fine-tuning's checkpoints): the caller removes it. A process
    killed by SIGKILL (or the out-of-memory killer) runs no cleanup, and its scratch can be gigabytes:
    the folders of processes on this machine that are gone are removed first (:func:`remove_stale_scratch`)."""
    remove_stale_scratch()
    return Path(tempfile.mkdtemp(prefix=f"lora-adapt-{kind}-{host_tag()}-{os.getpid()}-"))


@contextmanager
def scratch_dir(kind: str) -> Iterator[Path]:
    """:func:`scratch_folder`, removed when the block ends (``tempfile.TemporaryDirectory`` that a killed
    run does not leave behind for good)."""
    folder = scratch_folder(kind)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_stale_scratch(root: Path | None = None) -> list[Path]:
    """Remove the scratch folders in ``root`` (the system temp folder) whose process, on this machine, is
    gone; those of running processes, of other machines (a shared temp folder) and other names are left.
    Returns the folders removed."""
    return remove_orphans(Path(root or tempfile.gettempdir()), SCRATCH)


def remove_orphans(folder: Path, owned: re.Pattern[str]) -> list[Path]:
    """Remove the folders in ``folder`` whose names match ``owned`` (with ``host`` and ``pid`` groups) and
    whose process, on this machine, is gone (this process's own are alive). Returns those removed."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    removed = []
    for entry in entries:
        match = owned.match(entry.name)
        if match is None or match["host"] != host_tag() or not entry.is_dir(follow_symlinks=False):
            continue
        if not process_alive(int(match["pid"])):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def host_tag() -> str:
    """This machine, in 8 hex digits (a staging folder's owner is a process on one machine)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _siblings(path: Path) -> list[Path]:
    try:
        return list(path.parent.iterdir())
    except OSError:
        return []


def check_output(out_dir: Path, *, overwrite: bool, keep: Sequence[Path] = ()) -> Path:
    """``out_dir`` resolved, when a command may write it: never the working directory, the home folder
    or a folder that is or holds one of ``keep`` (the runs and adapters the command reads) - replacing
    it would delete them; an existing folder only with ``overwrite``."""
    out = Path(out_dir).resolve()
    recover_replaced(out)  # a replace killed midway must not make the old output look absent
    for guarded in (Path.cwd(), Path.home(), *(Path(k).resolve() for k in keep)):
        if out == guarded or guarded.is_relative_to(out):
            what = guarded if out == guarded else f"{out}, which holds {guarded}"
            raise UsageError(f"--out would replace {what}", hint="choose a new folder for the output")
    if out.exists() and not overwrite:
        raise UsageError(
            f"{out} already exists", hint="pass --overwrite to replace it, or choose another --out"
        )
    return out


def replace_dir(stage: Path, final: Path) -> None:
    """Put the folder ``stage`` at ``final``, replacing what is there, so that a kill at any moment leaves
    a complete folder: the old ``final`` is renamed aside (``.<name>.<stamp>.replaced``), the stage renamed
    into place, then the aside copy deleted. What a killed replace left is settled first
    (:func:`recover_replaced`)."""
    final = Path(final)
    recover_replaced(final)
    aside = None
    if final.exists() or final.is_symlink():
        aside = final.with_name(f".{final.name}.{time.time_ns()}-{os.getpid()}{REPLACED_SUFFIX}")
        os.rename(final, aside)
    os.rename(stage, final)
    _fsync_dir(final.parent)
    if aside is not None:
        _remove(aside)


REPLACED_SUFFIX = ".replaced"


def recover_replaced(final: Path) -> str | None:
    """Settle the aside copies a killed :func:`replace_dir` left next to ``final``: with ``final`` missing
    (killed between its two renames) the newest one is renamed back to ``final``, the old folder as it was;
    any other (killed before the aside copy was deleted) is deleted. Asides of replaces still running in
    another process are left alone. Returns a note saying what was done, or None."""
    final = Path(final)
    asides = sorted(
        (p for p in _replaced_asides(final) if not _writer_alive(p)), key=lambda p: _stamp(p) or (0, 0)
    )
    if not asides:
        return None
    note = None
    if not (final.exists() or final.is_symlink()):
        restored = asides.pop()
        os.rename(restored, final)
        _fsync_dir(final.parent)
        note = f"restored {final} from {restored.name}, left by a replace that was interrupted"
    for aside in asides:
        _remove(aside)
    return note


def _replaced_asides(final: Path) -> list[Path]:
    prefix = f".{final.name}."
    return [
        p
        for p in _siblings(final)
        if p.name.startswith(prefix) and p.name.endswith(REPLACED_SUFFIX) and _stamp(p) is not None
    ]


def _stamp(aside: Path) -> tuple[int, int] | None:
    """(time in ns, pid) from ``.<name>.<ns>-<pid>.replaced``."""
    middle = aside.name[: -len(REPLACED_SUFFIX)].rsplit(".", 1)[-1]
    ns, _, pid = middle.partition("-")
    return (int(ns), int(pid)) if ns.isdigit() and pid.isdigit() else None


def _writer_alive(aside: Path) -> bool:
    """The process that renamed ``aside`` is another one still running (its replace may be under way)."""
    pid = (_stamp(aside) or (0, 0))[1]
    return pid != 0 and _other_process_alive(pid)


def _other_process_alive(pid: int) -> bool:
    return pid != os.getpid() and process_alive(pid)


def process_alive(pid: Any) -> bool:
    """Whether a process with this pid runs on this machine (one we may not signal counts as running)."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def follow_umask(folder: Path) -> None:
    """Give every file and folder under ``folder`` the permissions the umask allows (0644 / 0755 under
    the usual 022): libraries write some files 0600 (safetensors) and temporary folders are 0700."""
    mask = current_umask()
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def current_umask() -> int:
    """The process umask (read from /proc where it can be, so that nothing is changed even briefly)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
