"""The memory planner: will this recipe fit on this GPU, and what to change if not.

Static terms are exact counts on a meta-device skeleton of the real architecture (with the recipe's
LoRA attached by peft); activations follow PERFORMANCE.md's per-layer formula tensor by tensor; each
suggestion is priced by re-running the estimate with that change."""

from __future__ import annotations

from .plan import Estimator, plan
from .report import ModeReport, PlanReport, Suggestion, render
from .settings import MODES, Settings, settings_for
from .units import parse_size

__all__ = [
    "MODES",
    "Estimator",
    "ModeReport",
    "PlanReport",
    "Settings",
    "Suggestion",
    "parse_size",
    "plan",
    "render",
    "settings_for",
]
