"""Learning curves from a training history (``metrics.json`` -> ``train.history``): a PNG in every run
directory, and a warning when the validation score falls while the training loss keeps falling.

Pure functions of the history (matplotlib, Agg backend, for the plot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..recipe.derived import LOSS, greater_is_better, metric_name

History = list[dict[str, Any]]
SCORE_TOLERANCE = 0.005
"""A validation score must fall by more than this (absolute, or 1% of the best) to count as falling."""
LOSS_TOLERANCE = 0.02
"""The validation loss must rise by more than this share of its best value to count."""


def series(history: History, key: str) -> list[tuple[int, float]]:
    """(step, value) of every history entry that has ``key``."""
    return [
        (int(h["step"]), float(h[key])) for h in history if key in h and "step" in h and h[key] is not None
    ]


def curve_metric(history: History, preferred: str | None) -> str:
    """The validation metric a run's curves and warning use: ``preferred`` when the history has it,
    else the loss."""
    if preferred and series(history, f"eval_{metric_name(preferred)}"):
        return metric_name(preferred)
    return LOSS


def overfitting_warning(history: History, metric: str, best_step: int | None = None) -> str | None:
    """One sentence when the validation ``metric`` ended clearly worse than its best while the training
    loss kept falling after that best evaluation; None otherwise."""
    evals = series(history, f"eval_{metric}")
    train = series(history, "loss")
    if len(evals) < 2 or not train:
        return None
    higher = greater_is_better(metric)
    best_at, best = (max if higher else min)(evals, key=lambda sv: sv[1])
    last_at, last = evals[-1]
    drop = (best - last) if higher else (last - best)
    tolerance = max(SCORE_TOLERANCE, 0.01 * abs(best)) if higher else LOSS_TOLERANCE * abs(best)
    if last_at == best_at or drop <= tolerance:
        return None
    before = [v for s, v in train if s <= best_at]
    after = [v for s, v in train if s > best_at]
    if not before or not after or min(after[-2:]) >= before[-1]:
        return None
    kept = (
        f"the saved adapter is step {best_step}'s (early stopping)"
        if best_step is not None
        else "set training.early_stopping to keep the best step's adapter"
    )
    moved = "fell" if higher else "rose"
    return (
        f"validation {metric} {moved} from {best:.4f} (step {best_at}) to {last:.4f} (step {last_at}) while "
        f"the training loss kept falling ({before[-1]:.4f} -> {after[-1]:.4f}): the adapter overfits after "
        f"step {best_at}; {kept}"
    )


def save_learning_curves(history: History, path: Path, metric: str, best_step: int | None = None) -> Path:
    """Training and validation loss against the step, and the validation ``metric`` beside them."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    score = series(history, f"eval_{metric}") if metric != LOSS else []
    fig, axes = plt.subplots(1, 2 if score else 1, figsize=(11 if score else 6, 4), squeeze=False)
    try:
        _plot(
            axes[0][0],
            {"training loss": series(history, "loss"), "validation loss": series(history, "eval_loss")},
        )
        axes[0][0].set_ylabel("loss")
        if score:
            _plot(axes[0][1], {f"validation {metric}": score})
            axes[0][1].set_ylabel(metric)
        for ax in axes[0]:
            ax.set_xlabel("optimizer step")
            if best_step is not None:
                ax.axvline(best_step, color="grey", linestyle=":", label=f"saved adapter (step {best_step})")
            if ax.lines:
                ax.legend(fontsize=8)
        fig.suptitle("Learning curves")
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return Path(path)


def _plot(ax, lines: dict[str, list[tuple[int, float]]]) -> None:
    for label, points in lines.items():
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3, label=label)
