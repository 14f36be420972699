"""What ``--resume`` may change: a resumed run continues the checkpoint's optimizer, schedule and data
order, so a recipe change that affects training would be recorded but never happen. Those changes are
refused (each key named); the rest (evaluation, output, logging, where and how fast it runs) apply.
"""

from __future__ import annotations

from typing import Any

# Dotted keys (or section prefixes) a resume may change: they do not change what is trained.
RESUMABLE = (
    "description",
    "evaluation",
    "output",
    "model.device",
    "model.attn_implementation",
    "training.progress_bar",
    "training.logging_steps",
    "training.report_to",
    "training.eval_batch_size",
    "training.save_steps",
    "training.save_total_limit",
    "training.gradient_checkpointing",
    "training.divergence",
)


def training_changes(started: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted key, value when the run started, value now)`` for each change that affects training."""
    return [
        (key, old, new)
        for key, old, new in _differences(started, now, "")
        if not any(key == allowed or key.startswith(allowed + ".") for allowed in RESUMABLE)
    ]


def _differences(old: Any, new: Any, prefix: str) -> list[tuple[str, Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in [*old, *(k for k in new if k not in old)]:
            dotted = f"{prefix}.{key}" if prefix else str(key)
            out += _differences(old.get(key), new.get(key), dotted)
        return out
    return [] if old == new else [(prefix, old, new)]


def describe_changes(changes: list[tuple[str, Any, Any]]) -> str:
    return ", ".join(f"{key} ({old!r} -> {new!r})" for key, old, new in changes)
