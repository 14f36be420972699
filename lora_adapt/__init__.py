"""lora-adapt: adapt large language models to a domain with LoRA and QLoRA from one YAML recipe."""

from __future__ import annotations

from .errors import LoraAdaptError
from .recipe import Recipe, load_recipe

__version__ = "0.1.0"


def run(recipe: Recipe, **kwargs):
    """Run the whole pipeline for a recipe; see :func:`lora_adapt.pipeline.run`."""
    from .pipeline import run as _run

    return _run(recipe, **kwargs)


def __getattr__(name: str):
    if name == "AdapterSet":  # many adapters on one base (lora_adapt.domains); imported on first use
        from .domains.adapter_set import AdapterSet

        return AdapterSet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AdapterSet", "LoraAdaptError", "Recipe", "__version__", "load_recipe", "run"]
