"""The benchmark summary as a markdown report."""

from __future__ import annotations

from typing import Any

MIB = 2**20


def markdown(summary: dict[str, Any], chart: str) -> str:
    lines = [f"# lora-adapt benchmark: {summary['model']} on {summary['device']}", ""]
    lines += _context(summary) + ["", *_arm_table(summary), "", *_ratio_table(summary), "", *_marks(summary)]
    lines += ["", f"![charts]({chart})", "", *_notes(summary)]
    return "\n".join(lines) + "\n"


def _context(s: dict[str, Any]) -> list[str]:
    hw, v, st = s["hardware"], s["versions"], s["settings"]
    gpu = f", GPU {hw['gpu']} ({hw['gpu_memory_bytes'] / 2**30:.0f} GiB)" if "gpu" in hw else ""
    packed = [name for name in s.get("arms", {}) if name.endswith("+packing")]
    packing = f"{st['packing']}" + (f" (on in {', '.join(packed)})" if packed and not st["packing"] else "")
    return [
        f"- Command: `{s['command']}`",
        f"- When: {s['created_utc']}; hardware: {hw.get('cpu')} x{hw.get('logical_cpus')} logical CPUs, "
        f"{hw.get('ram_bytes', 0) / 2**30:.0f} GiB RAM{gpu}; {hw['platform']}; torch threads per run: "
        f"{s.get('torch_threads')}",
        f"- Versions: python {v['python']}, torch {v['torch']}, transformers {v['transformers']}, trl {v['trl']}, "
        f"peft {v['peft']}, bitsandbytes {v['bitsandbytes']}, lora-adapt {v['lora-adapt']}",
        f"- Job: task {st['task']}, sequence length {st['max_seq_length']}, micro-batch {st['batch_size']} "
        f"x accumulation {st['gradient_accumulation_steps']}, packing {packing}, gradient checkpointing "
        f"{st['gradient_checkpointing']}, optimizer {st['optimizer']}, precision {st['precision']}, model dtype "
        f"{st['model_dtype']}, attention {st['attn_implementation']}; adapter {st['adapter']['method']} "
        f"r={st['adapter']['rank']} on {st['adapter']['target_modules']} (dropout {st['adapter']['dropout']}); "
        f"qlora = {st['quantization_when_qlora']}",
        *(
            [
                f"- GPU memory capped at {s['gpu_memory_cap_bytes'] / 2**30:.1f} GiB per process "
                "(`torch.cuda.set_per_process_memory_fraction`) to emulate a smaller card"
            ]
            if s.get("gpu_memory_cap_bytes")
            else []
        ),
        f"- Each arm ran {s['repeats']} times in its own process, arms interleaved (A B C ... A B C); figures are "
        "medians with [min-max].",
    ]


def _arm_table(s: dict[str, Any]) -> list[str]:
    memory = "peak allocated MiB" if s["device"] == "cuda" else "peak RSS MiB"
    rows = [
        f"| arm | {memory} | planner MiB (error) | saved for backward MiB (planner) | tokens/s | "
        "model FLOPs/token | in-step FLOPs/token | final loss | trainable |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, arm in s["arms"].items():
        m, pred = arm["metrics"], arm.get("predicted") or {}
        if arm["errors"] and not m["tokens_per_s"]["n"]:
            rows.append(f"| {name} | failed: {arm['errors'][0].splitlines()[-1][:80]} | | | | | | | |")
            continue
        peak = m["peak_memory"]["median"]
        planner = f"{pred['peak'] / MIB:.0f} ({pred['peak'] / peak - 1:+.0%})" if pred and peak else "-"
        saved = (
            f"{_mib(m['saved_bytes'])} ({pred['saved_bytes'] / MIB:.0f})" if pred else _mib(m["saved_bytes"])
        )
        rows.append(
            f"| {name} | {_mib(m['peak_memory'])} | {planner} | {saved} | {_num(m['tokens_per_s'])} | "
            f"{_sci(m['model_flops_per_token'])} | {_sci(m['flops_per_token'])} | {_num(m['final_loss'], 3)} | "
            f"{arm['trainable_params']:,} |"
        )
    return rows


def _ratio_table(s: dict[str, Any]) -> list[str]:
    rows = ["| ratio | metric | median [min-max] |", "|---|---|---|"]
    for r in s["ratios"]:
        rows.append(
            f"| {r['numerator']} / {r['denominator']} | {r['metric']} | "
            f"{r['median']:.3f} [{r['min']:.3f}-{r['max']:.3f}] |"
        )
    return rows


def _marks(s: dict[str, Any]) -> list[str]:
    rows = ["| mark | status | detail |", "|---|---|---|"]
    rows += [f"| {m['mark']} | {m['status']} | {m['detail']} |" for m in s["marks"]]
    return rows


def _notes(s: dict[str, Any]) -> list[str]:
    notes = [
        "Notes:",
        "- tokens/s counts real tokens (attention-mask ones; with packing, the packed rows without their padding), "
        "excludes warm-up and the FLOP-counting step.",
        "- FLOPs/token (`torch.utils.flop_counter.FlopCounterMode`, matmul and attention kernels only): "
        "*model* = the model's own forward + backward at the benchmark's batch shape (the LoRA/full mark uses "
        "it); *in-step* = one whole training step as executed, which misses the in-place `addmm_` gradient "
        "accumulation of TRL's fused LM head and bitsandbytes' 4-bit kernels (QLoRA is undercounted in both).",
        "- saved for backward: unique storage bytes packed by `torch.autograd.graph.saved_tensors_hooks` "
        "during one forward (parameters excluded).",
    ]
    if s["device"] == "cuda":
        notes.append(
            "- GPU: peak = `torch.cuda.max_memory_allocated` (reserved in the JSON); the planner column is "
            "its allocated peak, without the CUDA context and allocator slack it adds for a fit verdict."
        )
    else:
        notes.append(
            "- CPU: peak RSS of the arm's process (`ru_maxrss`), which includes python and the libraries "
            "(the planner's `process` term); CPU training runs in fp32, so bf16 marks are not measured here."
        )
        notes.append(
            f"- CPU allocator: {s.get('malloc')}: freed tensors return to the OS at once, so RSS follows the "
            "bytes held; glibc's default keeps freed memory cached (a trial measured ~15% more RSS)."
        )
    return notes


def _mib(stat: dict[str, Any]) -> str:
    if stat["median"] is None:
        return "-"
    return f"{stat['median'] / MIB:.0f} [{stat['min'] / MIB:.0f}-{stat['max'] / MIB:.0f}]"


def _num(stat: dict[str, Any], digits: int = 0) -> str:
    if stat["median"] is None:
        return "-"
    return f"{stat['median']:.{digits}f} [{stat['min']:.{digits}f}-{stat['max']:.{digits}f}]"


def _sci(stat: dict[str, Any]) -> str:
    return "-" if stat["median"] is None else f"{stat['median']:.3g}"
