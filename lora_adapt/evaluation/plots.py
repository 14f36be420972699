"""The confusion matrix as a PNG (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ANNOTATE_MAX_LABELS = 20


def save_confusion_png(confusion: dict[str, Any], path: Path, title: str = "Confusion matrix (test)") -> Path:
    """Rows = gold label, columns = predicted label; cells annotated when there are few labels."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows, cols, matrix = confusion["labels"], confusion["columns"], confusion["matrix"]
    side = max(4.0, min(24.0, 0.35 * len(cols) + 2.5))
    fig, ax = plt.subplots(figsize=(side + 1, side))
    try:
        image = ax.imshow(matrix, cmap="Blues", aspect="auto")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xticks(range(len(cols)), labels=cols, rotation=90, fontsize=_font(cols))
        ax.set_yticks(range(len(rows)), labels=rows, fontsize=_font(rows))
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        ax.set_title(title)
        if len(cols) <= ANNOTATE_MAX_LABELS:
            _annotate(ax, matrix)
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return Path(path)


def _font(labels: list[str]) -> int:
    return 9 if len(labels) <= 20 else 6 if len(labels) <= 50 else 4


def _annotate(ax, matrix: list[list[int]]) -> None:
    peak = max((max(row) for row in matrix if row), default=0) or 1
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if value:
                ax.text(
                    j,
                    i,
                    str(value),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if value > peak / 2 else "black",
                )
