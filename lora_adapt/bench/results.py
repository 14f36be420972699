"""Benchmark results: medians with their range, paired ratios, the planner's prediction next to each
measured peak, the published marks with a verdict (or "not measured here"), and the files: JSON, a
markdown table and PNG charts."""

from __future__ import annotations

import json
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..manifest import package_versions, utc_now
from ..recipe import Recipe, load_recipe
from ..recipe.derived import mode_recipe

MIB = 2**20
METRICS = (
    "tokens_per_s",
    "peak_memory",
    "cuda_max_reserved",
    "saved_bytes",
    "model_flops_per_token",
    "flops_per_token",
    "final_loss",
    "padding_share",
)
RATIOS = (  # (numerator arm, denominator arm, metric)
    ("lora-adapt/lora", "lora-adapt/full", "tokens_per_s"),
    ("lora-adapt/qlora", "lora-adapt/lora", "tokens_per_s"),
    ("lora-adapt/lora", "lora-adapt/full", "peak_memory"),
    ("lora-adapt/qlora", "lora-adapt/full", "peak_memory"),
    ("lora-adapt/lora", "lora-adapt/full", "model_flops_per_token"),
    ("lora-adapt/lora", "lora-adapt/full", "flops_per_token"),
    ("lora-adapt/lora", "peer-trainer/lora", "tokens_per_s"),
    ("lora-adapt/lora", "peer-trainer/lora", "peak_memory"),
    ("lora-adapt/lora", "peer-trl/lora", "tokens_per_s"),
    ("lora-adapt/lora", "peer-trl/lora", "peak_memory"),
    ("lora-adapt/lora+packing", "peer-trainer/lora", "tokens_per_s"),
    ("lora-adapt/lora+packing", "peer-trainer/lora", "peak_memory"),
    *(
        (f"lora-adapt/lora+loss={p}", "lora-adapt/lora", metric)
        for p in ("chunked", "trl", "liger")
        for metric in ("tokens_per_s", "peak_memory")
    ),
)


def spread(values: Sequence[float | None]) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(present), "min": min(present), "max": max(present), "n": len(present)}


def summarize(
    results: list[dict[str, Any]],
    arms: list[Any],
    *,
    recipe: Recipe,
    device: str,
    command: str,
    source_model: str,
    repeats: int,
    recipe_path: Path | None = None,
    malloc: str | None = None,
) -> dict[str, Any]:
    per_arm = {}
    for arm in arms:
        runs = [r for r in results if r["spec"]["arm"] == arm.name]
        ok = [_with_peak(r, device) for r in runs if "error" not in r]
        per_arm[arm.name] = {
            "kind": arm.kind,
            "mode": arm.mode,
            "overrides": list(arm.overrides),
            "errors": [r["error"] for r in runs if "error" in r],
            "metrics": {m: spread([r.get(m) for r in ok]) for m in METRICS},
            "trainable_params": ok[0]["trainable_params"] if ok else None,
            "predicted": _predict(recipe_path, arm, device, ok) if ok and recipe_path else None,
        }
    summary = {
        "created_utc": utc_now(),
        "command": command,
        "device": device,
        "hardware": hardware(device),
        "versions": package_versions(),
        "model": source_model,
        "repeats": repeats,
        "malloc": malloc,
        "torch_threads": next((r.get("torch_threads") for r in results if r.get("torch_threads")), None),
        "gpu_memory_cap_bytes": next(
            (r["gpu_memory_cap_bytes"] for r in results if r.get("gpu_memory_cap_bytes")), None
        ),
        "settings": _settings(recipe),
        "arms": per_arm,
        "ratios": ratios(results, device),
        "runs": results,
    }
    summary["marks"] = marks(summary)
    return summary


def _with_peak(run: dict[str, Any], device: str) -> dict[str, Any]:
    """The peak the planner is checked against: torch's max allocated on a GPU (reserved is reported
    beside it), the process's peak RSS on a CPU."""
    peak = run.get("cuda_max_allocated") if device == "cuda" else run.get("peak_rss")
    return {**run, "peak_memory": peak}


def ratios(results: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    """Paired by repeat (the arms of one round ran back to back), then median and range."""
    out = []
    for num, den, metric in RATIOS:
        pairs = []
        for r in {x["spec"]["repeat"] for x in results}:
            a, b = (_value(results, arm, r, metric, device) for arm in (num, den))
            if a is not None and b:
                pairs.append(a / b)
        if pairs:
            out.append({"numerator": num, "denominator": den, "metric": metric, **spread(pairs)})
    return out


def _value(results, arm: str, repeat: int, metric: str, device: str) -> float | None:
    for r in results:
        if r["spec"]["arm"] == arm and r["spec"]["repeat"] == repeat and "error" not in r:
            return _with_peak(r, device).get(metric)
    return None


PEER_LOSS_PATHS = {"peer-trainer": "logits", "peer-trl": "trl"}  # the model's own loss; TRL's fused head


def _predict(recipe_path: Path, arm: Any, device: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The planner for this arm: the peak at the largest micro-batch the arm met, the saved-for-backward
    bytes at the shape of the forward where they were measured."""
    from ..planner import Estimator, settings_for
    from ..planner.activations import activation_bytes
    from ..planner.shapes import load_config

    rows, length = max((tuple(r["longest_batch"]) for r in runs), key=lambda b: b[0] * b[1])
    variant = mode_recipe(load_recipe(recipe_path, arm.overrides), arm.mode)
    loss_path = PEER_LOSS_PATHS.get(arm.kind) if variant.task.type == "sft" else None
    estimator = Estimator(load_config(variant.model.name_or_path))

    def settings(batch: tuple[int, int]):
        return settings_for(
            variant, arm.mode, device=device, seq_len=batch[1], micro_batch=batch[0], loss_path=loss_path
        )

    st = settings((rows, length))
    est = estimator(st)
    saved_at = tuple(runs[0].get("saved_batch") or (rows, length))
    act = activation_bytes(estimator.skeleton(st), settings(saved_at))
    comparable = max(est.phases.values()) if device == "cuda" else est.peak  # same footing as peak_memory
    return {
        "peak": comparable,
        "peak_with_overheads": est.peak,
        "peak_phase": est.peak_phase,
        "saved_bytes": act.saved + act.logits,
        "terms": est.terms,
        "overhead": est.overhead,
        "batch": [rows, length],
        "saved_batch": list(saved_at),
    }


def _settings(recipe: Recipe) -> dict[str, Any]:
    t = recipe.training
    return {
        "max_seq_length": recipe.data.max_seq_length,
        "batch_size": t.batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "packing": t.packing,
        "gradient_checkpointing": t.gradient_checkpointing,
        "optimizer": t.optimizer,
        "precision": t.precision,
        "model_dtype": recipe.model.dtype,
        "attn_implementation": recipe.model.attn_implementation,
        "adapter": {
            "method": recipe.adapter.method,
            "rank": recipe.adapter.rank,
            "target_modules": recipe.adapter.target_modules,
            "dropout": recipe.adapter.dropout,
        },
        "quantization_when_qlora": mode_recipe(recipe, "qlora").quantization.method,
        "task": recipe.task.type,
    }


def hardware(device: str) -> dict[str, Any]:
    import os

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "logical_cpus": os.cpu_count(),
    }
    try:
        import psutil

        info["ram_bytes"] = psutil.virtual_memory().total
    except ImportError:  # pragma: no cover
        pass
    if device == "cuda":
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# --- marks ------------------------------------------------------------------------------------------


def marks(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's marks: a verdict where this run measures them, `not measured here` otherwise."""
    gpu = summary["device"] == "cuda"
    found = {(r["numerator"], r["denominator"], r["metric"]): r for r in summary["ratios"]}

    def ratio_mark(text: str, key: tuple[str, str, str], ok, needs_gpu: bool) -> dict[str, Any]:
        r = found.get(key)
        if r is None or (needs_gpu and not gpu):
            why = "needs a GPU run" if needs_gpu and not gpu else "arm not run"
            cpu = f" (CPU run, for information: {r['median']:.2f})" if r and needs_gpu and not gpu else ""
            return {"mark": text, "status": "not measured here", "detail": why + cpu}
        return {
            "mark": text,
            "status": "met" if ok(r["median"]) else "missed",
            "detail": f"median {r['median']:.3f} (range {r['min']:.3f}-{r['max']:.3f}, n={r['n']})",
        }

    out = [
        ratio_mark(
            "LoRA/full FLOPs per token 0.67 +- 0.03",
            ("lora-adapt/lora", "lora-adapt/full", "model_flops_per_token"),
            lambda v: abs(v - 0.67) <= 0.03,
            False,
        ),
        ratio_mark(
            "QLoRA peak memory <= 0.30x bf16 full fine-tune",
            ("lora-adapt/qlora", "lora-adapt/full", "peak_memory"),
            lambda v: v <= 0.30,
            True,
        ),
        ratio_mark(
            "LoRA tokens/s >= 1.3x full (GPU)",
            ("lora-adapt/lora", "lora-adapt/full", "tokens_per_s"),
            lambda v: v >= 1.3,
            True,
        ),
        ratio_mark(
            "QLoRA tokens/s >= 0.65x LoRA (GPU)",
            ("lora-adapt/qlora", "lora-adapt/lora", "tokens_per_s"),
            lambda v: v >= 0.65,
            True,
        ),
        ratio_mark(
            "LoRA unpacked >= 1.0x tokens/s of the hand-written peer",
            ("lora-adapt/lora", "peer-trainer/lora", "tokens_per_s"),
            lambda v: v >= 1.0,
            False,
        ),
        ratio_mark(
            "LoRA unpacked peak memory <= 1.0x the hand-written peer's",
            ("lora-adapt/lora", "peer-trainer/lora", "peak_memory"),
            lambda v: v <= 1.0,
            False,
        ),
        ratio_mark(
            "packing >= 1.4x tokens/s of the hand-written peer",
            ("lora-adapt/lora+packing", "peer-trainer/lora", "tokens_per_s"),
            lambda v: v >= 1.4,
            False,
        ),
        ratio_mark(
            "packing peak memory <= 1.0x the hand-written peer's",
            ("lora-adapt/lora+packing", "peer-trainer/lora", "peak_memory"),
            lambda v: v <= 1.0,
            False,
        ),
    ]
    return out + _planner_marks(summary)


def _planner_marks(summary: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, arm in summary["arms"].items():
        pred, measured = arm.get("predicted"), arm["metrics"]["peak_memory"]["median"]
        if not pred or not measured:
            continue
        error = pred["peak"] / measured - 1
        out.append(
            {
                "mark": f"planner peak within 15% of measured: {name}",
                "status": "met" if abs(error) <= 0.15 else "missed",
                "detail": f"predicted {pred['peak'] / MIB:.0f} MiB, measured {measured / MIB:.0f} MiB "
                f"({error:+.1%})",
            }
        )
    return out


# --- files ------------------------------------------------------------------------------------------


def write_results(summary: dict[str, Any], out_dir: Path, prefix: str) -> None:
    from .charts import draw_charts
    from .tables import markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{prefix}.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out_dir / f"{prefix}.md").write_text(markdown(summary, f"{prefix}.png"))
    draw_charts(summary, out_dir / f"{prefix}.png")
