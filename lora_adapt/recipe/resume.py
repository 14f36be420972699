"""What ``--resume`` may change: a resumed run continues the checkpoint's optimizer, schedule and data
order, so a recipe change that affects training would be recorded but never happen. Those changes are
refused (each key named); the rest (evaluation, output, logging, where and how fast it runs) apply.

Settings whose `auto` resolves from the recipe alone (`training.head_lr_ratio`, `.min_steps`,
`.class_weights`) are compared by what they resolve to: a run started with `head_lr_ratio: auto` resumes
with an explicit 10 on a classification head (and the other way round, for a run recorded before `auto`
was the default), but not on a relation head, where `auto` is 1. A key the run's record lacks (a run
started by an older version, before the setting existed) is still a change: nothing says what it was.
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
        for key, old, new in _differences(_effective(started), _effective(now), "")
        if not any(key == allowed or key.startswith(allowed + ".") for allowed in RESUMABLE)
    ]


def _effective(recipe: dict[str, Any]) -> dict[str, Any]:
    """``recipe`` with each setting of :data:`RESOLVED_FROM_RECIPE` it holds wrapped in :class:`_Resolved`:
    compared by what it resolves to, shown as written."""
    from .schema import TrainingSpec

    training, task = recipe.get("training"), recipe.get("task")
    if not isinstance(training, dict) or not isinstance(task, dict):
        return recipe
    present = {k: training[k] for k in RESOLVED_FROM_RECIPE if k in training}
    try:
        spec = TrainingSpec.model_validate(present)
    except ValueError:  # an old or odd record: compare it as written
        return recipe
    kind = str(task.get("type"))
    # `task.mode: auto` is resolved when the model loads: compare under each mode it may become
    heads = (True, False) if task.get("mode", "auto") == "auto" else (task.get("mode") == "head",)
    multi_label = bool(task.get("multi_label"))
    resolved = {
        "head_lr_ratio": tuple(spec.resolved_head_lr_ratio(kind) if h else None for h in heads),
        "min_steps": tuple(spec.resolved_min_steps(head=h) for h in heads),
        "class_weights": tuple(
            spec.resolved_class_weights(tagging=kind == "token_classification", multi_label=multi_label)
            if h
            else None
            for h in heads
        ),
    }
    return {
        **recipe,
        "training": {
            **training,
            **{k: _Resolved(v, training[k]) for k, v in resolved.items() if k in present},
        },
    }


class _Resolved:
    """A setting compared by what it resolves to, shown as written."""

    def __init__(self, value: Any, written: Any):
        self.value, self.written = value, written

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Resolved) and self.value == other.value

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = repr(self.written)
        values = {v for v in self.value if v is not None}
        if values == {self.written} or not values:
            return shown
        return f"{shown} (= {' or '.join(repr(v) for v in sorted(values, key=str))})"


RESOLVED_FROM_RECIPE = ("head_lr_ratio", "min_steps", "class_weights")


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
