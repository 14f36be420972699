"""Benchmark charts: peak memory (measured, with the planner's prediction), tokens/s, FLOPs per token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MIB = 2**20


def draw_charts(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [name for name, arm in summary["arms"].items() if arm["metrics"]["tokens_per_s"]["n"]]
    if not arms:
        return
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    _bars(axes[0], summary, arms, "peak_memory", MIB, "peak memory (MiB)", predicted=True)
    _bars(axes[1], summary, arms, "tokens_per_s", 1, "tokens / s (padding excluded)")
    _bars(axes[2], summary, arms, "model_flops_per_token", 1e6, "model MFLOPs per token (forward + backward)")
    fig.suptitle(
        f"{summary['model']} on {summary['device']} - medians, bars span min-max over "
        f"{summary['repeats']} interleaved repeats"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bars(
    ax,
    summary: dict[str, Any],
    arms: list[str],
    metric: str,
    unit: float,
    title: str,
    predicted: bool = False,
) -> None:
    stats = [summary["arms"][a]["metrics"][metric] for a in arms]
    med = [(s["median"] or 0) / unit for s in stats]
    low = [m - (s["min"] or 0) / unit for m, s in zip(med, stats, strict=True)]
    high = [(s["max"] or 0) / unit - m for m, s in zip(med, stats, strict=True)]
    x = range(len(arms))
    ax.bar(x, med, yerr=[low, high], capsize=4, color="#4C72B0", label="measured")
    if predicted:
        preds = [(summary["arms"][a].get("predicted") or {}).get("peak") for a in arms]
        points = [(i, p / unit) for i, p in enumerate(preds) if p]
        if points:
            ax.scatter(
                [p[0] for p in points],
                [p[1] for p in points],
                color="#DD8452",
                marker="D",
                zorder=3,
                label="planner",
            )
            ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks(list(x))
    ax.set_xticklabels([a.replace("lora-adapt/", "la/") for a in arms], rotation=30, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
