"""The plan as data (JSON-able dataclasses) and as a table for people."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .units import format_gib

TERM_LABELS = {
    "weights": "weights (unquantized)",
    "quantized_weights": "quantized weights",
    "quant_constants": "quantization constants",
    "adapter": "adapter weights",
    "gradients": "gradients",
    "optimizer_states": "optimizer states",
    "autocast_copies": "autocast weight copies",
    "activations": "activations (saved)",
    "checkpoint_recompute": "checkpoint recompute",
    "logits_loss": "logits + loss",
    "optimizer_step": "optimizer step buffers",
    "gathered_layers": "gathered layers (sharded)",
    "ddp_buckets": "DDP gradient buckets",
    "allocator_slack": "allocator slack",
    "cuda_context": "CUDA context",
    "process": "process (python, libs)",
}


@dataclass(frozen=True)
class ModeReport:
    mode: str
    terms: dict[str, int]
    overhead: dict[str, int]
    phases: dict[str, int]
    peak_phase: str
    peak_bytes: int
    fits: bool | None
    trainable_params: int
    total_params: int
    settings: dict[str, Any]


@dataclass(frozen=True)
class Suggestion:
    change: str
    description: str
    overrides: tuple[str, ...]  # `--set` values that apply it to the recipe
    peak_bytes: int
    saving_bytes: int
    fits: bool | None


@dataclass(frozen=True)
class PlanReport:
    model: str
    device: str
    budget_bytes: int | None
    recipe_mode: str
    seq_len: int
    micro_batch: int
    modes: tuple[ModeReport, ...]
    num_gpus: int = 1
    strategy: str = "single"
    suggestions: tuple[Suggestion, ...] = ()
    combined: Suggestion | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def mode(self, name: str) -> ModeReport:
        return next(m for m in self.modes if m.mode == name)

    @property
    def fits(self) -> bool | None:
        """Whether the recipe's own mode fits the budget (None without a budget)."""
        mine = [m for m in self.modes if m.mode == self.recipe_mode]
        return mine[0].fits if mine else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def render(report: PlanReport) -> str:
    """Terms x modes in GiB, the peak, the verdict and the ranked suggestions."""
    lines = [_header(report), "", *_table(report), ""]
    lines += _verdicts(report)
    if report.suggestions:
        lines += ["", f"To fit the {report.recipe_mode} run (each re-estimated alone, best first):"]
        for i, s in enumerate(report.suggestions, 1):
            verdict = "" if s.fits is None else ("  fits" if s.fits else "  still too big")
            lines.append(
                f"  {i}. {s.description}: -{format_gib(s.saving_bytes)} GiB -> {format_gib(s.peak_bytes)} GiB"
                f"{verdict}"
            )
            lines.append(f"     --set {' --set '.join(s.overrides)}" if s.overrides else "")
        if report.combined is not None:
            c = report.combined
            lines += [
                "",
                f"Together: {c.description} -> {format_gib(c.peak_bytes)} GiB"
                + ("" if c.fits is None else (" (fits)" if c.fits else " (still too big)")),
            ]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(line for line in lines if line is not None)


def _header(report: PlanReport) -> str:
    budget = (
        "no budget given" if report.budget_bytes is None else f"budget {format_gib(report.budget_bytes)} GiB"
    )
    where = report.device if report.num_gpus <= 1 else f"each of {report.num_gpus} GPUs ({report.strategy})"
    return (
        f"Memory plan for {report.model} on {where} ({budget}); sequence {report.seq_len} tokens, "
        f"micro-batch {report.micro_batch}; the recipe is a {report.recipe_mode} run"
    )


def _table(report: PlanReport) -> list[str]:
    names = [m.mode for m in report.modes]
    keys = [k for k in TERM_LABELS if any(k in m.terms or k in m.overhead for m in report.modes)]
    width = max(len(TERM_LABELS[k]) for k in keys) + 2
    rows = [f"{'GiB':<{width}}" + "".join(f"{n:>10}" for n in names)]
    for k in keys:
        values = [m.terms.get(k, m.overhead.get(k, 0)) for m in report.modes]
        if any(values):
            rows.append(f"{TERM_LABELS[k]:<{width}}" + "".join(f"{format_gib(v):>10}" for v in values))
    rows.append(f"{'peak':<{width}}" + "".join(f"{format_gib(m.peak_bytes):>10}" for m in report.modes))
    rows.append(f"{'peak at':<{width}}" + "".join(f"{m.peak_phase:>10.10}" for m in report.modes))
    rows.append(
        f"{'trainable params':<{width}}" + "".join(f"{_count(m.trainable_params):>10}" for m in report.modes)
    )
    return rows


def _verdicts(report: PlanReport) -> list[str]:
    if report.budget_bytes is None:
        return ["No --gpu-memory given: peaks only."]
    return [
        f"{m.mode}: {'fits' if m.fits else 'does NOT fit'} ({format_gib(m.peak_bytes)} of "
        f"{format_gib(report.budget_bytes)} GiB)"
        for m in report.modes
    ]


def _count(n: int) -> str:
    for unit, size in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
