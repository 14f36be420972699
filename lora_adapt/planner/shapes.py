"""Where a model's *shape* comes from: a local folder, a folder inside an installed package, a Hub id,
or a built-in named shape used by the benchmarks (Llama-shaped configs with public dimensions).

Only the configuration is read: the planner never loads weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from ..modeling.source import PACKAGE_PREFIX, resolve_model_source
from ..recipe.schema import ModelSpec

# Public Llama dimensions, as plain LlamaConfig kwargs. `llama-60m` is the small shape used in the
# low-memory training literature (GaLore, arXiv:2403.03507); 1B/3B are Llama-3.2, 8B is Llama-3.1.
_LLAMA3 = {
    "vocab_size": 128256,
    "rope_theta": 500000.0,
    "max_position_embeddings": 131072,
    "num_key_value_heads": 8,
}
SHAPES: dict[str, dict[str, Any]] = {
    "llama-tiny": {
        "hidden_size": 128,
        "intermediate_size": 344,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 1024,
        "max_position_embeddings": 2048,
    },
    "llama-20m": {
        "hidden_size": 256,
        "intermediate_size": 688,
        "num_hidden_layers": 8,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": 32000,
        "max_position_embeddings": 4096,
    },
    "llama-60m": {
        "hidden_size": 512,
        "intermediate_size": 1376,
        "num_hidden_layers": 8,
        "num_attention_heads": 8,
        "num_key_value_heads": 8,
        "vocab_size": 32000,
        "max_position_embeddings": 4096,
    },
    "llama-1b": {
        **_LLAMA3,
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "head_dim": 64,
        "tie_word_embeddings": True,
    },
    "llama-3b": {
        **_LLAMA3,
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "num_hidden_layers": 28,
        "num_attention_heads": 24,
        "head_dim": 128,
        "tie_word_embeddings": True,
    },
    "llama-8b": {
        **_LLAMA3,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "head_dim": 128,
        "tie_word_embeddings": False,
    },
}
SHAPE_PREFIX = "shape:"


def shape_config(name: str):
    """A LlamaConfig for a built-in named shape (``llama-1b`` or ``shape:llama-1b``)."""
    from transformers import LlamaConfig

    key = name.removeprefix(SHAPE_PREFIX)
    if key not in SHAPES:
        raise ModelLoadError(f"unknown built-in shape '{key}'", hint=f"known shapes: {', '.join(SHAPES)}")
    return LlamaConfig(**SHAPES[key])


def is_shape_name(name: str) -> bool:
    return name.removeprefix(SHAPE_PREFIX) in SHAPES and not Path(name).exists()


def load_config(name_or_path: str, *, revision: str | None = None, trust_remote_code: bool = False):
    """The model configuration for a recipe's `model.name_or_path`, read without weights."""
    if is_shape_name(name_or_path):
        return shape_config(name_or_path)
    from transformers import AutoConfig

    source = name_or_path
    if name_or_path.startswith(PACKAGE_PREFIX):
        source = resolve_model_source(ModelSpec(name_or_path=name_or_path)).load_path
    try:
        return AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot read the model configuration of '{name_or_path}': {exc}",
            hint=f"use a local folder with config.json, package:NAME, or a built-in shape ({', '.join(SHAPES)})",
        ) from None
