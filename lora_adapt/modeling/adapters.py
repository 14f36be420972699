"""Adapter specs -> peft configs, attached to a loaded model."""

from __future__ import annotations

from typing import Any

from ..errors import RecipeError
from ..recipe.schema import AdapterSpec
from .loading import HEAD_MODULES, LoadedModel

PEFT_TASK_TYPES = {
    "causal_lm": "CAUSAL_LM",
    "sequence_classification": "SEQ_CLS",
    "token_classification": "TOKEN_CLS",
}
# The new head of a classifier model (HEAD_MODULES) is trained in full and saved with the adapter. peft adds it
# itself for SEQ_CLS and TOKEN_CLS, but for TOKEN_CLS (peft 0.21) only after injecting LoRA, so `all-linear` first
# wraps the head in LoRA and then fails ("modules_to_save cannot be applied to modules of type lora.Linear").
# Listing the head in the config up front keeps it out of the LoRA targets.


def build_lora_config(spec: AdapterSpec, *, task_type: str, modules_to_save: tuple[str, ...] = ()):
    from peft import LoraConfig

    init: Any = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora"}[spec.init]
    return LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,  # type: ignore[arg-type]  # peft annotates int; a float scales the same
        lora_dropout=spec.dropout,
        target_modules=spec.target_modules
        if isinstance(spec.target_modules, str)
        else list(spec.target_modules),
        use_rslora=spec.scaling == "rslora",
        use_dora=spec.method == "dora",
        modules_to_save=list(modules_to_save) or None,
        bias=spec.bias,
        init_lora_weights=init,
        task_type=task_type,
    )


def attach_adapter(loaded: LoadedModel, spec: AdapterSpec, *, gradient_checkpointing: bool = False):
    """Wrap the model with a fresh adapter. Quantized bases are prepared for k-bit training first, except
    when they will be sharded: that preparation upcasts the unquantized weights to fp32, and FSDP needs one
    dtype for the weights it shards together (axolotl skips it for FSDP + QLoRA for the same reason)."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    model = loaded.model
    check_target_modules(model, spec.target_modules)
    if loaded.quantized and not loaded.sharded:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    heads = HEAD_MODULES if loaded.head != "causal_lm" else ()
    modules_to_save = tuple(dict.fromkeys((*spec.modules_to_save, *heads)))
    config = build_lora_config(spec, task_type=PEFT_TASK_TYPES[loaded.head], modules_to_save=modules_to_save)
    try:
        return get_peft_model(model, config)
    except ValueError as exc:  # e.g. a name that matches a container (a block, a ModuleList), not a layer
        if "target module" not in str(exc).lower():
            raise
        first_line = str(exc).splitlines()[0]
        raise _target_error(
            model, f"peft cannot put LoRA on it: {first_line[:200]}", spec.target_modules
        ) from exc


def check_target_modules(model, targets: str | tuple[str, ...]) -> None:
    """Every name of a listed ``adapter.target_modules`` matches a layer of ``model`` the way peft matches
    them (the full dotted name, or its last parts). peft refuses a list where no name matches, but skips
    single names that match nothing, so a typo would train fewer layers than asked without a word; and a
    name matching only containers (a block, a ModuleList) fails inside peft with the whole module printed.
    Cheap: the pipeline calls it right after loading, before the run's folder is staged."""
    if isinstance(targets, str):
        return
    modules = [(name, module) for name, module in model.named_modules() if name]
    missing, containers = [], []
    for target in targets:
        matched = [m for name, m in modules if name == target or name.endswith("." + target)]
        if not matched:
            missing.append(target)
        elif not any(next(m.parameters(recurse=False), None) is not None for m in matched):
            containers.append(f"{target!r} ({type(matched[0]).__name__})")
    problems = []
    if missing:
        listed = ", ".join(repr(m) for m in missing)
        problems.append(f"{listed} {'matches' if len(missing) == 1 else 'match'} no module of the model")
    if containers:
        problems.append(f"{', '.join(containers)} names a block of layers, not a layer LoRA can wrap")
    if problems:
        raise _target_error(model, "; ".join(problems), missing)


def _target_error(model, problem: str, asked) -> RecipeError:
    import difflib

    layers = lora_layer_names(model)
    asked = [asked] if isinstance(asked, str) else list(asked)
    guesses = dict.fromkeys(g for a in asked for g in difflib.get_close_matches(a, layers, n=1, cutoff=0.6))
    guess = f" (did you mean {', '.join(repr(g) for g in guesses)}?)" if guesses else ""
    shown = ", ".join(layers[:16]) + (f" and {len(layers) - 16} more" if len(layers) > 16 else "")
    kind = type(model).__name__
    return RecipeError(
        [f"adapter.target_modules: {problem}{guess}; the layers of this {kind} LoRA can wrap: {shown}"],
        hint="list names from those (the last part of a module's name is enough), or use `all-linear`",
    )


def lora_layer_names(model) -> list[str]:
    """The last name parts of the model's layers LoRA can wrap (linear, embedding and convolution layers),
    in model order, each once."""
    import torch

    kinds = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    found: dict[str, None] = {}
    for name, module in model.named_modules():
        if name and (isinstance(module, kinds) or type(module).__name__ == "Conv1D"):
            found[name.rsplit(".", 1)[-1]] = None
    return list(found)


def parameter_counts(model) -> dict[str, float]:
    """Trainable and total parameters (4-bit packed weights counted as parameters, as peft does)."""
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
    else:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
    return {"trainable": int(trainable), "total": int(total), "share": trainable / total if total else 0.0}
