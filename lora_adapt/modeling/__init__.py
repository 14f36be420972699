"""Models: quantization config, model/tokenizer loading, adapters."""

from .adapters import attach_adapter, build_lora_config, parameter_counts
from .loading import LoadedModel, auto_class, bnb_config, load_model, load_tokenizer
from .source import ModelSource, resolve_model_source

__all__ = [
    "LoadedModel",
    "ModelSource",
    "attach_adapter",
    "auto_class",
    "bnb_config",
    "build_lora_config",
    "load_model",
    "load_tokenizer",
    "parameter_counts",
    "resolve_model_source",
]
