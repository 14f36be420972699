"""Disk space: checked up front where the size is predictable, and a full disk reported as one (no torch).

    check_free_space(stage, needed, what="the adapter checkpoints and the run")
    with disk_full_errors(stage, needed):
        ...  # training, checkpoints, the run files

A full disk surfaces in many shapes - ``OSError(ENOSPC)`` from Python writes, ``RuntimeError: [enforce
fail at inline_container.cc] unexpected pos`` from ``torch.save``, a ``SafetensorError`` wrapping the OS
error - and each becomes :class:`DiskFullError`: "no space left on DEVICE while writing FILE; N MB
needed", exit 1.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import DiskFullError, exception_chain

MB = 1024 * 1024
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# What torch.save and safetensors say when the OS refuses a write (the OS error itself is not chained).
WRITER_FAILURES = (
    "unexpected pos",
    "PytorchStreamWriter failed",
    "file write failed",
    "No space left on device",
    "StorageFull",
    "os error 28",
)


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(_existing(path)).free


def check_free_space(path: Path, needed: int, *, what: str) -> None:
    """Refuse (before any work) when ``path``'s filesystem has less than ``needed`` bytes free."""
    free = free_bytes(path)
    if free < needed:
        raise DiskFullError(
            f"not enough space on {filesystem_of(path)} for {what}: {_mb(needed)} MB needed, "
            f"{_mb(free)} MB free",
            hint="free some space, or choose another --output-dir (training.save_total_limit bounds "
            "the checkpoints kept)",
        )


@contextmanager
def disk_full_errors(
    path: Path, needed: int | Callable[[], int], *, writing: str | Callable[[], str] | None = None
) -> Iterator[None]:
    """Turn a full-disk failure inside the block into :class:`DiskFullError` (others pass through).

    ``needed``: the bytes the work needs, or a function giving them (known only part-way); ``writing``:
    what was being written when the failure does not name its file (or a function saying it)."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        needed = needed() if callable(needed) else needed
        if not is_disk_full(exc, path, needed):
            raise
        target = _written_file(exc) or (writing() if callable(writing) else writing) or str(path)
        raise DiskFullError(
            f"no space left on {filesystem_of(path)} while writing {target}; {_mb(needed)} MB needed "
            f"({_mb(free_bytes(path))} MB free now)",
            hint="free some space, then rerun the same command with --resume: it continues from the "
            "last complete checkpoint",
        ) from exc


def is_disk_full(exc: BaseException, path: Path, needed: int) -> bool:
    """An ENOSPC/EDQUOT anywhere in the chain, or a writer failure while the disk has less than ``needed`` free."""
    writer_failure = False
    for current in exception_chain(exc):
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return True
        writer_failure = writer_failure or any(text in str(current) for text in WRITER_FAILURES)
    return writer_failure and free_bytes(path) < max(needed, MB)


def filesystem_of(path: Path) -> str:
    """``DEVICE (FSTYPE) at MOUNTPOINT`` from /proc/mounts, else the mount point alone."""
    mount = _mount_point(_existing(path))
    try:
        entries = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return str(mount)
    for fields in reversed(entries):  # the last mount on a point is the visible one
        if len(fields) >= 3 and _unescape(fields[1]) == str(mount):
            return f"{fields[0]} ({fields[2]}) at {mount}"
    return str(mount)


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while path != path.parent and not os.path.ismount(path):
        path = path.parent
    return path


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")


def _existing(path: Path) -> Path:
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _written_file(exc: BaseException) -> str | None:
    for current in exception_chain(exc):
        if isinstance(current, OSError) and current.filename:
            return str(current.filename)
    return None


def _mb(n: int) -> str:
    return f"{n / MB:,.1f}"
