"""Explanations written for a person: one self-contained HTML page (inline CSS, no scripts, no external
resources) with each input's words shaded by their attribution, and a PNG bar chart per explanation."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from .attribution import Explanation, Word

PNG_MAX_WORDS = 40
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 60em; color: #222; }
.text { line-height: 2.1; font-size: 1.05em; }
.w { padding: 0.15em 0.25em; border-radius: 0.25em; }
.meta { color: #555; font-size: 0.9em; }
.part { color: #777; font-size: 0.85em; margin-right: 0.5em; }
section { border-top: 1px solid #ddd; padding: 0.5em 0 1em; }
"""


def render_html(explanations: Sequence[Explanation], title: str) -> str:
    """A standalone page: per explanation its target, prediction, scores and the shaded words."""
    body = [f"<h1>{html.escape(title)}</h1>", _legend()]
    for number, explanation in enumerate(explanations, 1):
        body.append(_section(number, explanation))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _legend() -> str:
    return (
        "<p class='meta'>Integrated Gradients: green words push the output up, red words push it down; "
        "the shade is the attribution relative to the largest one in that input. Attributions sum to "
        "<i>output - baseline output</i> up to the convergence delta shown.</p>"
    )


def _section(number: int, e: Explanation) -> str:
    peak = max((abs(w.score) for w in e.words), default=0.0) or 1.0
    parts = []
    for part in (0, 1) if e.text_b is not None else (0,):
        words = " ".join(_span(w, peak) for w in e.words if w.part == part)
        label = f"<span class='part'>{'A' if part == 0 else 'B'}</span>" if e.text_b is not None else ""
        parts.append(f"<div class='text'>{label}{words}</div>")
    meta = (
        f"explained output: <b>{html.escape(e.target)}</b> &middot; prediction: <b>{html.escape(e.prediction)}</b>"
        f" &middot; output {e.score:.4f}, baseline {e.baseline_score:.4f}, sum of attributions "
        f"{sum(w.score for w in e.words):.4f}, convergence delta {e.delta:.2e} after {e.steps} steps"
        + ("" if e.converged else " &middot; <b>NOT CONVERGED: these attributions are unreliable</b>")
    )
    return f"<section><h2>#{number}</h2><p class='meta'>{meta}</p>{''.join(parts)}</section>"


def _span(word: Word, peak: float) -> str:
    strength = min(1.0, abs(word.score) / peak)
    rgb = "34,139,34" if word.score >= 0 else "200,40,40"
    return (
        f"<span class='w' style='background: rgba({rgb},{0.08 + 0.7 * strength:.2f})' "
        f"title='{word.score:+.4f}'>{html.escape(word.text)}</span>"
    )


def save_png(explanation: Explanation, path: Path) -> Path:
    """A horizontal bar per word (in text order; the most attributed ones when the text is long)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    words = _shown(explanation.words)
    height = max(2.5, 0.28 * len(words) + 1.2)
    fig, ax = plt.subplots(figsize=(8, height))
    try:
        labels = [f"{'B: ' if w.part else ''}{w.text}"[:40] for w in words]
        colors = ["#228b22" if w.score >= 0 else "#c82828" for w in words]
        ax.barh(range(len(words)), [w.score for w in words], color=colors)
        ax.set_yticks(range(len(words)), labels=labels, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="#444", linewidth=0.8)
        ax.set_xlabel("attribution")
        ax.set_title(f"{explanation.target} (prediction: {explanation.prediction})"[:90], fontsize=10)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def _shown(words: list[Word]) -> list[Word]:
    if len(words) <= PNG_MAX_WORDS:
        return words
    keep = set(sorted(range(len(words)), key=lambda i: -abs(words[i].score))[:PNG_MAX_WORDS])
    return [w for i, w in enumerate(words) if i in keep]
