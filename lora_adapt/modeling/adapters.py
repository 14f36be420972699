"""Adapter specs -> peft configs, attached to a loaded model."""

from __future__ import annotations

from typing import Any

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
    if loaded.quantized and not loaded.sharded:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    heads = HEAD_MODULES if loaded.head != "causal_lm" else ()
    modules_to_save = tuple(dict.fromkeys((*spec.modules_to_save, *heads)))
    config = build_lora_config(spec, task_type=PEFT_TASK_TYPES[loaded.head], modules_to_save=modules_to_save)
    return get_peft_model(model, config)


def parameter_counts(model) -> dict[str, float]:
    """Trainable and total parameters (4-bit packed weights counted as parameters, as peft does)."""
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
    else:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
    return {"trainable": int(trainable), "total": int(total), "share": trainable / total if total else 0.0}
