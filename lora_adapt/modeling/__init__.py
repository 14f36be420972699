"""Models: quantization config, model/tokenizer loading, adapters, reloading trained adapters.

Names are imported on first use, so that torch-free callers (the planner, `validate`) can import
``lora_adapt.modeling.source`` without pulling torch in through this package."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .adapted import AdaptedModel, load_adapted, resolve_adapter
    from .adapters import attach_adapter, build_lora_config, parameter_counts
    from .loading import LoadedModel, auto_class, bnb_config, load_model, load_tokenizer
    from .source import ModelSource, resolve_model_source

_EXPORTS = {
    "AdaptedModel": "adapted",
    "load_adapted": "adapted",
    "resolve_adapter": "adapted",
    "attach_adapter": "adapters",
    "build_lora_config": "adapters",
    "parameter_counts": "adapters",
    "LoadedModel": "loading",
    "auto_class": "loading",
    "bnb_config": "loading",
    "load_model": "loading",
    "load_tokenizer": "loading",
    "ModelSource": "source",
    "resolve_model_source": "source",
}
__all__ = [
    "AdaptedModel",
    "LoadedModel",
    "ModelSource",
    "attach_adapter",
    "auto_class",
    "bnb_config",
    "build_lora_config",
    "load_adapted",
    "load_model",
    "load_tokenizer",
    "parameter_counts",
    "resolve_adapter",
    "resolve_model_source",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
