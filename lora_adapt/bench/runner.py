"""`lora-adapt bench`: the same job in several arms, each in its own process, interleaved
(A B C A B C ...) and repeated, then summarised as medians with their range, with the planner's
prediction beside every measured peak."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import scratch_folder
from ..recipe import Recipe, dump_recipe, load_recipe
from .data import is_medquad_dir, medquad_rows, texts, write_jsonl
from .models import materialize, model_folder, needs_materializing
from .spec import ArmSpec

Echo = Callable[[str], None]
PEERS = ("trainer", "trl")
WORKER_TIMEOUT_S = 3600
# CPU workers pin glibc's mmap threshold (128 KiB, which also turns off its dynamic growth): freed tensors
# go back to the OS at once, so peak RSS is the bytes the job held, not what glibc kept cached. With the
# default allocator a trial measured ~15% more (LoRA arm, llama-60m: 2696 vs 2348 MiB).
CPU_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


@dataclass(frozen=True)
class Arm:
    name: str
    kind: str
    mode: str
    overrides: tuple[str, ...] = ()


def arms_for(
    modes: tuple[str, ...],
    peers: tuple[str, ...],
    *,
    packing: bool,
    generative: bool,
    loss_paths: tuple[str, ...] = (),
) -> list[Arm]:
    """lora-adapt in each mode, then the peers (TRL only for generative recipes), then packing, then LoRA
    with each other loss path (`training.loss_path`; generative recipes)."""
    arms = [Arm(f"lora-adapt/{m}", "lora-adapt", m) for m in modes]
    arms += [Arm(f"peer-{p}/lora", f"peer-{p}", "lora") for p in peers if generative or p == "trainer"]
    if packing and generative:
        arms.append(Arm("lora-adapt/lora+packing", "lora-adapt", "lora", ("training.packing=true",)))
    if generative:
        arms += [
            Arm(f"lora-adapt/lora+loss={p}", "lora-adapt", "lora", (f"training.loss_path={p}",))
            for p in loss_paths
        ]
    return arms


def run_bench(
    recipe_path: Path,
    *,
    modes: tuple[str, ...],
    peers: tuple[str, ...] = PEERS,
    steps: int = 3,
    warmup: int = 1,
    repeats: int = 3,
    out_dir: Path,
    workdir: Path | None = None,
    packing: bool = False,
    loss_paths: tuple[str, ...] = (),
    label: str | None = None,
    command: str = "",
    threads: int | None = None,
    echo: Echo = print,
) -> dict[str, Any]:
    """Run every arm `repeats` times, interleaved; write JSON, markdown and charts to `out_dir`. The models,
    data and logs go to `workdir`, else to a scratch folder removed at the end (kept, and named, when an arm
    failed: its log is there)."""
    from .results import write_results

    recipe = load_recipe(recipe_path)
    work = Path(workdir) if workdir else scratch_folder("bench")  # removed below unless an arm failed
    try:
        summary = _run_arms(
            recipe, work, modes, peers, steps, warmup, repeats, packing, loss_paths, command, threads, echo
        )
    except BaseException:
        if not workdir:
            shutil.rmtree(work, ignore_errors=True)
        raise
    if not workdir:
        _settle_workdir(work, summary, echo)
    prefix = label or f"{'gpu' if summary['device'] == 'cuda' else 'cpu'}_{_slug(recipe.model.name_or_path)}"
    write_results(summary, Path(out_dir), prefix)
    echo(f"results: {Path(out_dir) / prefix}.json / .md / .png")
    return summary


def _run_arms(
    recipe: Recipe,
    work: Path,
    modes: tuple[str, ...],
    peers: tuple[str, ...],
    steps: int,
    warmup: int,
    repeats: int,
    packing: bool,
    loss_paths: tuple[str, ...],
    command: str,
    threads: int | None,
    echo: Echo,
) -> dict[str, Any]:
    from ..modeling.hardware import resolve_device
    from .results import summarize

    device = resolve_device(recipe.model.device)
    bench_recipe = prepare_inputs(recipe, work, total_steps=warmup + steps + 1, device=device, echo=echo)
    generative = (
        load_recipe(bench_recipe).task.type in ("sft", "extraction") or recipe.task.mode == "generative"
    )
    arms = arms_for(modes, peers, packing=packing, generative=generative, loss_paths=loss_paths)
    results = []
    for repeat in range(repeats):
        for arm in arms:
            spec = ArmSpec(
                arm.name,
                arm.kind,
                arm.mode,
                str(bench_recipe),
                str(work / "arms"),
                warmup,
                steps,
                repeat,
                arm.overrides,
            )
            results.append(run_worker(spec, work, echo, cpu=device == "cpu", threads=threads))
    summary = summarize(
        results,
        arms,
        recipe=load_recipe(bench_recipe),
        device=device,
        command=command,
        source_model=recipe.model.name_or_path,
        repeats=repeats,
        recipe_path=bench_recipe,
        malloc=None if device == "cuda" else _malloc_setting(),
    )
    return summary


def _settle_workdir(work: Path, summary: dict[str, Any], echo: Echo) -> None:
    """Remove the scratch work folder; when an arm failed, keep it under a name no later run sweeps away."""
    if not any("error" in r for r in summary.get("runs", [])):
        shutil.rmtree(work, ignore_errors=True)
        return
    kept = work.with_name(f"lora-adapt-bench-logs-{work.name.rsplit('-', 1)[-1]}")
    work.rename(kept)
    echo(
        f"logs of the failed arms kept in {kept / 'specs'} (models and data beside them; delete it when done)"
    )


def prepare_inputs(recipe: Recipe, work: Path, *, total_steps: int, device: str, echo: Echo) -> Path:
    """Materialise a named shape, convert MedQuAD XML to JSONL, pin the steps; write the bench recipe."""
    work.mkdir(parents=True, exist_ok=True)
    data = recipe.data
    corpus: list[str] = []
    if data.path is not None and is_medquad_dir(data.path):
        rows = medquad_rows(data.path)
        corpus = texts(rows)
        jsonl = write_jsonl(rows, work / "data" / "medquad.jsonl")
        data = data.model_copy(update={"path": None, "train": jsonl, "format": "instruction"})
        echo(f"data: {len(rows)} MedQuAD QA pairs -> {jsonl}")
    model = recipe.model
    if needs_materializing(model.name_or_path):
        folder = model_folder(work, model.name_or_path)
        source = data.train or data.path
        corpus = corpus or (
            source.read_text(encoding="utf-8").splitlines() if source and source.is_file() else []
        )
        if not (folder / "config.json").exists():
            echo(f"model: materialising {model.name_or_path} with random weights in {folder}")
        materialize(model.name_or_path, folder, corpus, device=device)
        model = model.model_copy(update={"name_or_path": str(folder)})
    training = recipe.training.model_copy(
        update={
            "max_steps": total_steps,
            "logging_steps": 1,
            "progress_bar": False,
            "eval_steps": None,
            "early_stopping": None,
            "report_to": "none",
        }
    )
    bench = recipe.model_copy(
        update={
            "model": model,
            "data": data,
            "training": training,
            "evaluation": recipe.evaluation.model_copy(update={"enabled": False, "perplexity": False}),
            "output": recipe.output.model_copy(update={"dir": work / "runs", "publish": None}),
        }
    )
    path = work / "bench-recipe.yaml"
    path.write_text(dump_recipe(bench), encoding="utf-8")
    load_recipe(path)  # the bench recipe must still be valid
    return path


def run_worker(
    spec: ArmSpec, work: Path, echo: Echo, *, cpu: bool = False, threads: int | None = None
) -> dict[str, Any]:
    """One arm in a fresh process; a failure is recorded, not raised, so the other arms still run."""
    stem = f"{spec.arm.replace('/', '_').replace('+', '_')}_r{spec.repeat}"
    spec_path, out_path, log_path = (
        work / "specs" / f"{stem}{ext}" for ext in (".json", ".result.json", ".log")
    )
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps(spec.to_json()))
    env = {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        **(CPU_MALLOC_ENV if cpu and os.environ.get("LORA_ADAPT_BENCH_MALLOC") != "default" else {}),
        **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}),
    }
    env.setdefault("LORA_ADAPT_DATA_CACHE", str(work / "data-cache"))  # arms share one prepared copy
    start = time.perf_counter()
    with log_path.open("w") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "lora_adapt.bench.worker", str(spec_path), str(out_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=WORKER_TIMEOUT_S,
        )
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not out_path.exists():
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        echo(f"  {spec.arm} repeat {spec.repeat}: FAILED (exit {proc.returncode}): {' | '.join(tail)}")
        return {
            "spec": spec.to_json(),
            "error": "\n".join(tail),
            "returncode": proc.returncode,
            "wall_s": wall,
        }
    result = json.loads(out_path.read_text()) | {"wall_s": wall}
    echo(
        f"  {spec.arm} repeat {spec.repeat}: {_fmt_rate(result.get('tokens_per_s'))} tokens/s, "
        f"peak RSS {result['peak_rss'] / 2**20:.0f} MiB ({wall:.0f} s)"
    )
    return result


def _malloc_setting() -> str:
    if os.environ.get("LORA_ADAPT_BENCH_MALLOC") == "default":
        return "glibc default (dynamic mmap threshold)"
    return " ".join(f"{k}={v}" for k, v in CPU_MALLOC_ENV.items())


def _fmt_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _slug(name: str) -> str:
    return Path(name.removeprefix("package:").rstrip("/")).name.replace("/", "-")
