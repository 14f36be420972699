"""Never lose a run: one writer per run name, interrupted runs kept until the user says otherwise, resume
from the newest complete checkpoint only, full disks and unwritable folders reported as such, and a resume
that refuses recipe changes it could not honour."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import cli, instruction_rows, sft_recipe, write_jsonl

from lora_adapt import artifacts as A
from lora_adapt.errors import DiskFullError
from lora_adapt.pipeline import run
from lora_adapt.recipe import load_recipe
from lora_adapt.rundir_lock import claim_run, lock_path
from lora_adapt.training.checkpoints import MARKER, checkpoint_problem
from lora_adapt.training.runner import whole_run_mean

REPO = Path(__file__).resolve().parents[1]
HOLDER = """
import sys, time
from pathlib import Path
from transformers import TrainerCallback
from lora_adapt.pipeline import run
from lora_adapt.recipe import load_recipe

class Hold(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1:
            Path(sys.argv[2]).write_text("training")
            while not Path(sys.argv[3]).exists():
                time.sleep(0.1)

run(load_recipe(sys.argv[1]), callbacks=[Hold()], echo=lambda line: None)
"""


def subprocess_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
    }


def wait_for(path: Path, proc: subprocess.Popen, limit_s: float = 900) -> None:
    """Poll until ``path`` exists (a hang guard only: nothing is asserted about time)."""
    deadline = time.monotonic() + limit_s
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the first run exited early: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the first run never reached its first step")
        time.sleep(0.2)


def test_a_second_run_on_a_locked_name_is_refused_and_the_first_finishes_intact(tiny_llama_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", instruction_rows(32))
    recipe = sft_recipe(tmp_path, tiny_llama_dir, data, training={"max_steps": 3, "save_steps": 2})
    script, started, go = tmp_path / "holder.py", tmp_path / "started", tmp_path / "go"
    script.write_text(HOLDER)
    first = subprocess.Popen(
        [sys.executable, str(script), str(recipe), str(started), str(go)],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(started, first)
        final = tmp_path / "runs" / "tiny"
        for extra in ((), ("--overwrite",), ("--resume",)):
            second = cli("run", str(recipe), "--set", "training.seed=7", *extra)
            assert second.exit_code == 2, second.output
            assert "another run is writing" in second.output and f"process {first.pid}" in second.output
            assert "model:" not in second.output  # refused before loading anything
        assert A.in_progress_dir(final).is_dir(), "the first run's staging folder must be untouched"
    finally:
        go.write_text("go")
        output, _ = first.communicate(timeout=900)
    assert first.returncode == 0, output
    assert A.read_json(final / A.MANIFEST)["seed"] == 42  # the first run's result, not the second's
    assert not lock_path(final).exists(), "a finished run releases and removes its lock"


def test_a_stale_lock_of_a_dead_process_is_said_and_taken_over(tmp_path):
    final = tmp_path / "runs" / "x"
    final.parent.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    lock_path(final).write_text(f'{{"pid": {int(dead.stdout)}, "command": "lora-adapt run old.yaml"}}\n')
    said: list[str] = []
    with claim_run(final, resume=False, overwrite=False, echo=said.append) as claim:
        assert claim.lock == lock_path(final) and not claim.resuming
        assert str(os.getpid()) in lock_path(final).read_text()
    assert any(
        "stale lock" in s and f"process {int(dead.stdout)}" in s and "no longer running" in s for s in said
    )
    assert not lock_path(final).exists() and final.parent.is_dir()


def test_a_failed_claim_leaves_no_empty_output_folder(tmp_path):
    final = tmp_path / "new-runs" / "x"
    A.in_progress_dir(final).parent.mkdir()
    A.in_progress_dir(final).mkdir()
    with pytest.raises(Exception, match="interrupted run"):
        with claim_run(final, resume=False, overwrite=False, echo=print):
            pass
    assert A.in_progress_dir(final).is_dir()  # kept
    fresh = tmp_path / "fresh" / "x"
    with pytest.raises(RuntimeError):
        with claim_run(fresh, resume=False, overwrite=False, echo=print):
            raise RuntimeError("failed before writing")
    assert not fresh.parent.exists()


def full_disk_at(path_suffix: str):
    """A torch.save that writes half an archive at ``path_suffix`` and then hits a full disk."""
    real = torch.save

    def save(obj, f, *args, **kwargs):
        if str(f).endswith(path_suffix):
            Path(f).write_bytes(b"PK\x03\x04 half an archive")
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real(obj, f, *args, **kwargs)

    return save


def test_interrupted_save_is_kept_refuses_changed_recipe_and_resumes_from_the_newest_complete_checkpoint(
    tiny_llama_dir, tmp_path, monkeypatch
):
    data = write_jsonl(tmp_path / "train.jsonl", instruction_rows(40))
    path = sft_recipe(tmp_path, tiny_llama_dir, data, training={"max_steps": 6, "save_steps": 2})
    final, stage = tmp_path / "runs" / "tiny", A.in_progress_dir(tmp_path / "runs" / "tiny")
    checkpoints = stage / A.CHECKPOINTS_DIR
    monkeypatch.setattr(torch, "save", full_disk_at("checkpoint-4/optimizer.pt"))
    with pytest.raises(DiskFullError) as err:
        run(load_recipe(path), echo=lambda line: None)
    assert "no space left on" in err.value.message and "checkpoint-4/optimizer.pt" in err.value.message
    assert "MB needed" in err.value.message and "--resume" in err.value.hint and err.value.exit_code == 1
    monkeypatch.undo()
    assert checkpoint_problem(checkpoints / "checkpoint-2") is None
    assert "cut short" in checkpoint_problem(checkpoints / "checkpoint-4")

    again = cli("run", str(path))  # no --resume: refused, nothing deleted
    assert again.exit_code == 2 and "interrupted run" in again.output and "--resume" in again.output
    assert "checkpoint-2, checkpoint-4" in again.output and (checkpoints / "checkpoint-4").is_dir()

    changed = cli(
        "run", str(path), "--resume", "--set", "training.learning_rate=1e-3", "--set", "training.seed=7"
    )
    assert changed.exit_code == 2, changed.output
    assert (
        "training.learning_rate (0.005 -> 0.001)" in changed.output
        and "training.seed (42 -> 7)" in changed.output
    )
    assert (checkpoints / "checkpoint-2").is_dir() and not final.exists()

    old_umask = os.umask(0o027)
    try:
        resumed = cli("run", str(path), "--resume", "--set", "evaluation.perplexity=false")  # allowed change
    finally:
        os.umask(old_umask)
    assert resumed.exit_code == 0, resumed.output
    assert "checkpoint-4 is incomplete" in resumed.output and "resuming from checkpoint-2" in resumed.output
    manifest, metrics = A.read_json(final / A.MANIFEST), A.read_json(final / A.METRICS)
    assert [r["from_step"] for r in manifest["resumes"]] == [2] and metrics["train"]["global_step"] == 6
    losses = {h["step"]: h["loss"] for h in metrics["train"]["history"] if "loss" in h}
    assert sorted(losses) == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]  # logging_steps 1: every step's loss, before and after the resume
    assert metrics["train"]["mean_loss"] == pytest.approx(sum(losses.values()) / 6, abs=1e-5)
    assert not stage.exists() and A.read_json(final / A.MANIFEST)["name"] == "tiny"
    modes = {p.name: p.stat().st_mode & 0o777 for p in final.rglob("*") if p.is_file()}
    assert set(modes.values()) == {0o640}, modes  # the umask's permissions, atomic writes included


def test_whole_run_mean_counts_the_steps_before_each_resume():
    history = [
        {"step": 1, "loss": 4.0},
        {"step": 4, "loss": 2.0},  # mean of steps 2-4
        {
            "step": 5,
            "loss": 9.0,
        },  # logged after the checkpoint at 4, lost with the crash: not in a restored history
        {"step": 6, "loss": 1.0},  # first log after resuming from step 4: mean of steps 5-6
    ]
    restored = [h for h in history if h["step"] != 5]
    assert whole_run_mean(restored, [4], session_mean=1.0, global_step=6) == pytest.approx(
        (4.0 * 1 + 2.0 * 3 + 1.0 * 2) / 6
    )
    assert whole_run_mean(restored, [], session_mean=1.5, global_step=6) == 1.5


def test_checkpoint_with_a_truncated_file_after_its_marker_is_not_trusted(tmp_path):
    from lora_adapt.training.checkpoints import mark_complete

    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    (folder / "trainer_state.json").write_text('{"global_step": 3}')
    torch.save({"x": torch.zeros(4)}, folder / "optimizer.pt")
    mark_complete(folder, 3)
    assert checkpoint_problem(folder) is None and (folder / MARKER).is_file()
    data = (folder / "optimizer.pt").read_bytes()
    (folder / "optimizer.pt").write_bytes(data[: len(data) // 2])
    assert "optimizer.pt has" in checkpoint_problem(folder)


def test_a_resume_without_a_record_of_its_recipe_is_refused_unless_unchecked_and_then_says_so(
    tiny_llama_dir, tmp_path
):
    from lora_adapt.rundir_lock import RUN_START, record_resume, resumable_start, start_record

    data = write_jsonl(tmp_path / "train.jsonl", instruction_rows(40))
    path = sft_recipe(tmp_path, tiny_llama_dir, data, training={"max_steps": 6, "save_steps": 2})
    stage = A.in_progress_dir(tmp_path / "runs" / "tiny")
    (stage / A.CHECKPOINTS_DIR / "checkpoint-2").mkdir(parents=True)  # checkpoints, no run_start.json
    refused = cli("run", str(path), "--resume")
    assert refused.exit_code == 2, refused.output
    assert (
        "no record of the recipe its checkpoints were trained with" in refused.output
        and RUN_START in refused.output
    )
    assert "--resume-unchecked" in refused.output and "--overwrite" in refused.output
    assert not (stage / A.CHECKPOINTS_DIR / RUN_START).exists()  # no start invented

    said: list[str] = []
    recipe = load_recipe(path).model_dump(mode="json")
    seed = resumable_start(stage, recipe, said.append, unchecked=True)
    record = start_record(stage, recipe, {}, seed)
    assert (
        "recipe_unchecked" in A.read_json(stage / A.CHECKPOINTS_DIR / RUN_START) and "unchecked" in said[-1]
    )
    entry = record_resume(stage, record, stage / A.CHECKPOINTS_DIR / "checkpoint-2")["resumes"][-1]
    assert entry["from_step"] == 2 and entry["recipe_checked"] is False

    shutil.rmtree(stage / A.CHECKPOINTS_DIR)  # no checkpoint, no record: nothing to check, a true start
    assert resumable_start(stage, recipe, said.append) is None and "training from the start" in said[-1]
    assert "recipe_unchecked" not in start_record(stage, recipe, {}, None)


def _checkpoint(folder: Path, step: int, files: tuple[str, ...]) -> Path:
    """A checkpoint folder holding ``files`` as transformers writes them (trainer state for ``step``)."""
    from safetensors.torch import save_file

    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name in files:
        if name == "trainer_state.json":
            (path / name).write_text(f'{{"global_step": {step}}}')
        elif name.endswith(".safetensors"):
            save_file({"w": torch.ones(4)}, str(path / name))
        else:
            torch.save({"state": torch.arange(64.0)}, path / name)
    return path


def test_an_unmarked_checkpoint_with_every_file_of_a_whole_save_is_set_aside_never_deleted(tmp_path):
    from lora_adapt.training.checkpoints import last_complete_checkpoint, mark_complete

    whole = (
        "adapter_model.safetensors",
        "training_args.bin",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
        "trainer_state.json",
    )
    folder = tmp_path / "checkpoints"
    mark_complete(_checkpoint(folder, 2, whole), 2)
    unmarked = _checkpoint(folder, 4, whole)  # stopped between transformers' save and our marker
    _checkpoint(folder, 6, whole[:3])  # stopped mid-save: no optimizer state, no trainer state
    damaged = _checkpoint(folder, 8, whole)
    data = bytearray((damaged / "optimizer.pt").read_bytes())
    data[data.index(torch.arange(64.0).numpy().tobytes()) + 100] ^= 0xFF  # in a tensor: sizes unchanged
    (damaged / "optimizer.pt").write_bytes(bytes(data))
    said: list[str] = []
    assert last_complete_checkpoint(folder, said.append) == folder / "checkpoint-2"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-2", "unmarked-checkpoint-4"]
    assert sorted(p.name for p in (folder / "unmarked-checkpoint-4").iterdir()) == sorted(whole)
    assert not unmarked.exists()
    notes = "\n".join(said)
    assert "checkpoint-8 is incomplete" in notes and "optimizer.pt fails its checksum" in notes
    assert (
        "checkpoint-6 is incomplete" in notes
        and "scheduler.pt, trainer_state.json, rng_state.pth missing" in notes
    )
    assert "checkpoint-4 has every file of a whole save but no completeness marker" in notes
    assert f"kept as {folder / 'unmarked-checkpoint-4'}" in notes and "not resumed from" in notes


# --- a real full / read-only filesystem, where user namespaces allow mounting one ----------------------


def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            "mount -t tmpfs -o size=64k tmpfs /mnt",
        ],
        capture_output=True,
    )
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="no user namespaces to mount a tiny filesystem in")


def in_namespace(mount: str, target: Path, *command: str) -> subprocess.CompletedProcess:
    """Run ``command`` with a private tmpfs mounted at ``target`` (``mount`` options, e.g. size=2m)."""
    shell = f'mount -t tmpfs -o {mount} tmpfs {target} && exec "$@"'
    return subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", shell, "sh", *command],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )


FILL_AT_STEP_3 = """
import json, sys
from pathlib import Path
from transformers import TrainerCallback
from lora_adapt.errors import DiskFullError
from lora_adapt.pipeline import run
from lora_adapt.recipe import load_recipe

filler = Path(sys.argv[2]) / "filler"

class FillTheDisk(TrainerCallback):  # another process fills the disk between two checkpoints
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            try:
                with filler.open("wb", buffering=0) as f:
                    while True:
                        f.write(b"x" * 4096)
            except OSError:  # full
                pass

out = {}
try:
    run(load_recipe(sys.argv[1]), callbacks=[FillTheDisk()], echo=lambda line: None)
except DiskFullError as exc:
    out["error"] = exc.message
filler.unlink()
said = []
result = run(load_recipe(sys.argv[1]), resume=True, echo=said.append)
out["said"] = said
out["steps"] = result.metrics["train"]["global_step"]
out["resumes"] = result.manifest["resumes"]
print(json.dumps(out))
"""


@needs_mount
def test_a_really_full_disk_mid_checkpoint_then_resume_after_freeing_space(tiny_llama_dir, tmp_path):
    import json

    data = write_jsonl(tmp_path / "train.jsonl", instruction_rows(40))
    out_dir = tmp_path / "tiny-fs"
    out_dir.mkdir()
    recipe = sft_recipe(
        tmp_path,
        tiny_llama_dir,
        data,
        training={"max_steps": 6, "save_steps": 2, "save_total_limit": 1},
        evaluation={"perplexity": False},
        output={"dir": str(out_dir)},
    )
    script = tmp_path / "fill.py"
    script.write_text(FILL_AT_STEP_3)
    done = in_namespace("size=12m", out_dir, sys.executable, str(script), str(recipe), str(out_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "no space left on tmpfs (tmpfs) at" in out["error"] and "checkpoint-4" in out["error"], out
    assert out["steps"] == 6 and out["resumes"][0]["from_step"] == 2, out
    assert any("checkpoint-4 is incomplete" in line for line in out["said"]), out["said"]


@needs_mount
def test_too_little_space_or_a_read_only_output_folder_is_refused_before_loading(tiny_llama_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", instruction_rows(16))
    out_dir = tmp_path / "fs"
    out_dir.mkdir()
    recipe = sft_recipe(tmp_path, tiny_llama_dir, data, output={"dir": str(out_dir / "runs")})
    lora_adapt = [sys.executable, "-c", "from lora_adapt.cli import main; main()", "run", str(recipe)]
    small = in_namespace("size=256k", out_dir, *lora_adapt)
    assert small.returncode == 1, small.stderr
    assert "not enough space on tmpfs (tmpfs) at" in small.stderr and "MB needed" in small.stderr
    assert "trained" not in small.stdout  # refused before training
    read_only = in_namespace("ro,size=1m", out_dir, *lora_adapt)
    assert read_only.returncode == 1, read_only.stderr
    assert "read-only file system" in read_only.stderr and "model:" not in read_only.stdout


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no cleanup of ours catches it."""


def _folder(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    (path / "adapter.bin").write_text(text)
    return path


def test_an_overwrite_killed_between_its_renames_loses_neither_run(tmp_path, monkeypatch):
    final = _folder(tmp_path / "runs" / "x", "old run")
    stage = _folder(A.in_progress_dir(final), "new run")
    real_rename, real_replace = os.rename, os.replace

    def killed_when_the_stage_moves(real):
        def move(src, dst):
            if Path(src) == stage:
                raise Killed
            real(src, dst)

        return move

    monkeypatch.setattr(A.os, "rename", killed_when_the_stage_moves(real_rename))
    monkeypatch.setattr(A.os, "replace", killed_when_the_stage_moves(real_replace))
    with pytest.raises(Killed):
        A.replace_dir(stage, final)
    monkeypatch.undo()
    assert (stage / "adapter.bin").read_text() == "new run"  # the new one is still staged
    # The next command on that name finds the old run where it was, not an empty name to write into.
    said: list[str] = []
    with pytest.raises(Exception, match="a finished run already exists"):
        with claim_run(final, resume=False, overwrite=False, echo=said.append):
            pass
    assert (final / "adapter.bin").read_text() == "old run"
    assert any(f"restored {final}" in s for s in said), said
    assert [p.name for p in final.parent.iterdir() if p.name.endswith(".replaced")] == []
    with pytest.raises(Exception, match="already exists"):  # outputs of merge/export/compose alike
        A.check_output(final, overwrite=False)


def test_the_aside_copy_left_by_an_overwrite_killed_before_deleting_it_is_cleaned(tmp_path, monkeypatch):
    final = _folder(tmp_path / "out", "old")
    real_rmtree = shutil.rmtree

    def killed_while_deleting(path, *args, **kwargs):
        if Path(path).name.endswith(".replaced"):
            raise Killed
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(A.shutil, "rmtree", killed_while_deleting)
    with pytest.raises(Killed):
        A.replace_dir(_folder(tmp_path / "stage-1", "new"), final)
    monkeypatch.undo()
    assert (final / "adapter.bin").read_text() == "new"
    assert len([p for p in tmp_path.iterdir() if p.name.endswith(".replaced")]) == 1
    A.replace_dir(_folder(tmp_path / "stage-2", "newer"), final)
    assert (final / "adapter.bin").read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the stale copy went with the next replace


def test_exception_chain_follows_causes_then_contexts_once_each():
    from lora_adapt.diskspace import is_disk_full
    from lora_adapt.errors import exception_chain

    full = OSError(errno.ENOSPC, "No space left on device", "/x/adapter.safetensors")
    wrapped = RuntimeError("safetensors: failed to write")
    wrapped.__cause__ = full  # raise ... from full
    wrapped.__context__ = KeyError("handled first")  # the cause wins over the context
    outer = ValueError("while reporting")
    outer.__context__ = wrapped  # raised while handling `wrapped`
    chain = list(exception_chain(outer))
    assert chain == [outer, wrapped, full]
    full.__context__ = outer  # a chain that loops back ends at the loop
    assert list(exception_chain(outer)) == [outer, wrapped, full] and list(exception_chain(None)) == []
    assert is_disk_full(outer, Path("/"), needed=0)  # the disk-full check walks the same chain


def test_a_resume_compares_auto_settings_by_what_they_resolve_to():
    from lora_adapt.recipe.resume import describe_changes, training_changes

    def recipe(task_type, mode="head", **training):
        return {"task": {"type": task_type, "mode": mode}, "training": {"learning_rate": 1e-4, **training}}

    auto = {"head_lr_ratio": "auto", "min_steps": "auto", "class_weights": "auto"}
    # a classification head: auto is 10x, 300 steps and no weights, so the explicit values are no change
    explicit = {"head_lr_ratio": 10.0, "min_steps": 300, "class_weights": "none"}
    assert training_changes(recipe("classification", **auto), recipe("classification", **explicit)) == []
    # the mode resolved when the model loads: equal only if equal under either mode (a causal LM
    # classifies generatively, where min_steps auto is 0)
    either = training_changes(
        recipe("classification", "auto", **auto), recipe("classification", "auto", **explicit)
    )
    assert describe_changes(either) == "training.min_steps ('auto' (= 0 or 300) -> 300)"
    # a relation head: auto is 1x, so a run recorded with 10 (the old default) is refused, both values shown
    changes = training_changes(
        recipe("relation_classification", head_lr_ratio=10.0),
        recipe("relation_classification", head_lr_ratio="auto"),
    )
    assert [c[0] for c in changes] == ["training.head_lr_ratio"]
    assert describe_changes(changes) == "training.head_lr_ratio (10.0 -> 'auto' (= 1.0))"
    # tagging: auto weights depend on the data (the majority tag's share), so any explicit value differs
    for explicit_weights in ("sqrt_balanced", "none"):
        assert training_changes(
            recipe("token_classification", class_weights="auto"),
            recipe("token_classification", class_weights=explicit_weights),
        )
    assert (
        training_changes(
            recipe("token_classification", class_weights="auto"),
            recipe("token_classification", class_weights="auto"),
        )
        == []
    )
    # generative: no head, so the head ratio is unused and min_steps auto is 0
    assert (
        training_changes(
            recipe("sft", "generative", head_lr_ratio=10.0, min_steps=0, class_weights="none"),
            recipe("sft", "generative", **auto),
        )
        == []
    )
    # a record from before a setting existed says nothing of it: still a change
    missing = training_changes(recipe("classification"), recipe("classification", min_steps="auto"))
    assert describe_changes(missing) == "training.min_steps (None -> 'auto' (= 300))"
    # anything else is compared as written
    assert training_changes(
        recipe("classification", **auto), recipe("classification", **auto, learning_rate=2e-4)
    )
