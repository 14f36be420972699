"""Checkpoints that ``--resume`` can trust, and the disk space they take.

transformers writes ``checkpoint-N/`` file by file (weights, optimizer, scheduler, RNG, trainer state),
so a crash or a full disk part-way leaves a folder that looks like a checkpoint and is not one. Here a
checkpoint counts only when it is whole: :class:`MarkComplete` writes ``lora_adapt_complete.json`` (every
file with its size) once transformers has finished saving (``on_save``), and
:func:`last_complete_checkpoint` trusts only marked folders whose files still have those sizes and
whose trainer state, safetensors and torch archives are intact. A checkpoint that does not count is
taken out of the way (with a note) so that a resumed run never mixes its files with a new save of the same
step: removed when it is half-written or damaged, but set aside (``unmarked-checkpoint-N``, discarded with
the other checkpoints when the run finishes) when only its marker is missing and every file transformers
writes is there and intact - the run was stopped between transformers' save and the marker. Such a
checkpoint is not resumed from: nothing but the marker says transformers' save returned.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .. import artifacts as A

MARKER = "lora_adapt_complete.json"
TRAINER_STATE = "trainer_state.json"
SAVED_BEFORE_STATE = ("optimizer.pt", "scheduler.pt", "training_args.bin")
"""Files transformers' ``_save_checkpoint`` writes before the trainer state (besides weights and RNG state)."""
UNMARKED_PREFIX = "unmarked-"
STEP = re.compile(r"^checkpoint-(\d+)$")
# Bytes of optimizer state per trainable parameter (fp32 moments; 8-bit optimizers quantize them).
OPTIMIZER_BYTES = {
    "adamw_torch": 8,
    "paged_adamw_32bit": 8,
    "adamw_8bit": 2,
    "paged_adamw_8bit": 2,
    "lion_8bit": 1,
    "adafactor": 4,
    "sgd": 4,
}
SMALL_FILES = 1024 * 1024  # trainer state, RNG state, training args, adapter config, scheduler


class MarkComplete(TrainerCallback):
    """After each save, record ``checkpoint-N``'s files and sizes: the checkpoint is now whole."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                mark_complete(folder, state.global_step)
        return control


def mark_complete(folder: Path, step: int) -> None:
    files = {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MARKER
    }
    A.atomic_write_json(folder / MARKER, {"step": step, "files": files})


def checkpoint_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be resumed from (None when it is whole)."""
    match = STEP.match(folder.name)
    if match is None:
        return "not a checkpoint folder"
    try:
        marker = A.read_json(folder / MARKER)
    except FileNotFoundError:
        return "its save was cut short: no completeness marker"
    except (ValueError, OSError):
        return f"its {MARKER} is damaged"
    for name, size in (marker.get("files") or {}).items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} were saved"
    return _structure_problem(folder, int(match.group(1)))


def _structure_problem(folder: Path, step: int) -> str | None:
    try:
        state = A.read_json(folder / TRAINER_STATE)
    except FileNotFoundError:
        return f"{TRAINER_STATE} is missing"
    except (ValueError, OSError):
        return f"{TRAINER_STATE} is damaged"
    if state.get("global_step") != step:
        return f"{TRAINER_STATE} is for step {state.get('global_step')}"
    for path in sorted(folder.glob("*.safetensors")):
        if not _safetensors_whole(path):
            return f"{path.name} is truncated"
    for path in sorted([*folder.glob("*.pt"), *folder.glob("*.pth"), *folder.glob("*.bin")]):
        if not zipfile.is_zipfile(path):
            return f"{path.name} is truncated"
    return None


def _safetensors_whole(path: Path) -> bool:
    """The header parses and the file is as long as its last tensor says."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error):
        return False
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    return path.stat().st_size == 8 + length + max(ends, default=0)


def checkpoints_by_step(folder: Path) -> list[Path]:
    """``checkpoint-N`` folders, newest first."""
    found = [
        (int(m.group(1)), p) for p in folder.glob("checkpoint-*") if (m := STEP.match(p.name)) and p.is_dir()
    ]
    return [p for _, p in sorted(found, reverse=True)]


def being_written(stage: Path) -> str:
    """What a failed write that names no file was writing: the newest checkpoint not (yet) marked whole,
    else the run in ``stage``."""
    folder = stage / A.CHECKPOINTS_DIR
    newest = next(iter(checkpoints_by_step(folder)), None) if folder.is_dir() else None
    return str(newest) if newest is not None and not (newest / MARKER).is_file() else f"the run in {stage}"


def last_complete_checkpoint(folder: Path, echo: Callable[[str], None]) -> Path | None:
    """The newest whole checkpoint; newer incomplete ones are removed (by the main process), each with a
    note saying why."""
    from ..rundir_lock import is_main_process

    if not folder.is_dir():
        return None
    for path in checkpoints_by_step(folder):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        if is_main_process():
            echo(_set_aside(path, problem))
    return None


def _set_aside(path: Path, problem: str) -> str:
    """Take a checkpoint that does not count out of the way; say what was done. An unmarked one that has
    every file of a whole save is renamed aside, never deleted; anything else is removed."""
    marked = (path / MARKER).is_file()
    lacks = None if marked else unmarked_problem(path)
    if marked or lacks is not None:
        shutil.rmtree(path, ignore_errors=True)
        why = problem if lacks is None else f"{problem}; {lacks}"
        return f"note: {path.name} is incomplete ({why}); removed, resuming from an earlier one"
    aside = path.with_name(UNMARKED_PREFIX + path.name)
    for again in range(1, 1000):  # one set aside by an earlier resume is kept too
        if not aside.exists():
            break
        aside = path.with_name(f"{UNMARKED_PREFIX}{path.name}.{again}")
    os.rename(path, aside)
    return (
        f"note: {path.name} has every file of a whole save but no completeness marker (the run was stopped "
        f"between transformers' save and the marker); not trusted, so not resumed from: kept as {aside} "
        "until the run finishes, resuming from an earlier one"
    )


def unmarked_problem(folder: Path) -> str | None:
    """What a checkpoint lacks to be a whole save, ignoring the marker: the trainer state for its step
    (transformers writes it last), weights, optimizer, scheduler, training arguments and RNG state, every
    torch archive passing its checksums. None when it has all of it."""
    missing = [name for name in (*SAVED_BEFORE_STATE, TRAINER_STATE) if not (folder / name).is_file()]
    if not any(folder.glob("*.safetensors")):
        missing.append("weights (*.safetensors)")
    if not any(folder.glob("rng_state*.pth")):
        missing.append("rng_state.pth")
    if missing:
        return f"{', '.join(missing)} missing"
    match = STEP.match(folder.name)
    structure = _structure_problem(folder, int(match.group(1))) if match else "not a checkpoint folder"
    if structure is not None:
        return structure
    for path in sorted([*folder.glob("*.pt"), *folder.glob("*.pth"), *folder.glob("*.bin")]):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (OSError, zipfile.BadZipFile):
            bad = path.name
        if bad is not None:
            return f"{path.name} fails its checksum"
    return None


def checkpoint_bytes(trainable_params: int, optimizer: str, tokenizer_bytes: int) -> int:
    """Disk taken by one checkpoint: fp32 adapter weights, optimizer state, tokenizer and small files."""
    per_param = 4 + OPTIMIZER_BYTES.get(optimizer, 8)
    return trainable_params * per_param + tokenizer_bytes + SMALL_FILES


def run_bytes(spec: Any, trainable_params: int, tokenizer_bytes: int) -> int:
    """What a run writes at most: ``save_total_limit + 1`` checkpoints at once (a new one is saved before
    the oldest is rotated out) plus the final adapter and the run files."""
    one = checkpoint_bytes(trainable_params, spec.optimizer, tokenizer_bytes)
    final = trainable_params * 4 + tokenizer_bytes + SMALL_FILES
    return (spec.save_total_limit + 1) * one + final
