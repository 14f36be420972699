"""Learning rates per parameter role and class weights for classifier heads. Pure functions, unit-tested.

Parameter roles: the new classifier head (the caller names its modules: ``modeling.loading.HEAD_MODULES``,
wrapped by peft's ``modules_to_save`` in a LoRA run) trains at ``training.head_lr_ratio`` x the learning rate, the
LoRA B matrices at ``training.lora_plus_ratio`` x (LoRA+), everything else at the learning rate.
Each role is split into weight-decay and no-decay groups as the Trainer does. The groups are handed to
the Trainer's own optimizer construction (``optimizer_cls_and_kwargs`` with ``params``), so the
optimizer class, its arguments and the scheduler stay the Trainer's.

Class weights (``training.class_weights``) multiply each class's cross-entropy term: ``balanced`` is
inverse frequency, n / (classes x count), as scikit-learn's ``class_weight="balanced"``;
``sqrt_balanced`` its square root. Classes absent from the training labels get weight 1 (they are
never a target). Weights are computed on the training split's label ids (tokens for tagging). `auto`
resolves by the training split's label counts (`TrainingSpec.resolved_class_weights`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from ..recipe.schema import TrainingSpec

ROLES = ("base", "lora_B", "head")
"""Group order: the Trainer logs the first group's rate, so the first is the one `training.learning_rate` sets."""


def parameter_role(name: str, head_modules: tuple[str, ...]) -> str:
    parts = name.split(".")
    if any(part in head_modules for part in parts):
        return "head"
    if any(part.startswith(("lora_B", "lora_embedding_B")) for part in parts):
        return "lora_B"
    return "base"


def role_learning_rates(spec: TrainingSpec, learning_rate: float, task_type: str) -> dict[str, float]:
    return {
        "head": learning_rate * spec.resolved_head_lr_ratio(task_type),
        "lora_B": learning_rate * spec.lora_plus_ratio,
        "base": learning_rate,
    }


def param_groups(
    named_parameters: Iterable[tuple[str, Any]],
    decay_names: set[str] | list[str],
    rates: dict[str, float],
    weight_decay: float,
    head_modules: tuple[str, ...],
) -> list[dict[str, Any]]:
    """Optimizer param groups: one per (role, decay) pair that has trainable parameters."""
    decay = set(decay_names)
    buckets: dict[tuple[str, bool], list[Any]] = {}
    for name, param in named_parameters:
        if param.requires_grad:
            buckets.setdefault((parameter_role(name, head_modules), name in decay), []).append(param)
    return [
        {
            "params": buckets[(role, decays)],
            "lr": rates[role],
            "weight_decay": weight_decay if decays else 0.0,
            "role": role,
        }
        for role in ROLES
        for decays in (True, False)
        if (role, decays) in buckets
    ]


def class_weights(label_ids: Iterable[int], num_labels: int, policy: str) -> list[float] | None:
    """Per-class loss weights from the training label ids (-100 ignored); None for ``none``."""
    if policy == "none":
        return None
    if policy not in ("balanced", "sqrt_balanced"):
        raise ValueError(f"class weight policy {policy!r} is not resolved (none, balanced or sqrt_balanced)")
    counts = Counter(i for i in label_ids if i != -100)
    total, present = sum(counts.values()), len(counts)
    if present < 2:
        return None
    weights = []
    for label in range(num_labels):
        raw = total / (present * counts[label]) if counts[label] else 1.0
        weights.append(math.sqrt(raw) if policy == "sqrt_balanced" else raw)
    return weights


def majority_share(counts: Mapping[Any, int]) -> float | None:
    """The most frequent label's share of ``counts`` (label -> count); None when there are none."""
    total = sum(counts.values())
    return max(counts.values()) / total if total else None


def flat_label_ids(labels: Iterable[Any]) -> list[int]:
    """A dataset's ``labels`` column (ints, or per-token lists for tagging) as one list of ids."""
    out: list[int] = []
    for value in labels:
        out.extend(value if isinstance(value, list) else [value])
    return out
