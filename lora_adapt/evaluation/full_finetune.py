"""The ``full_finetune`` baseline: the same base model, every parameter trained, the same budget.

It goes through the same functions as the adapter run (``modeling.load_model``, the head or SFT
trainer from ``training``, ``run_trainer``), on the same prepared data, with a training spec
derived from the recipe's (``model_copy``; the recipe itself is never changed). Only the learning
rate differs: full fine-tuning diverges at LoRA learning rates, so it trains at
``evaluation.full_finetune_learning_rate``, by default ``FULL_FT_LR_RATIO`` x the recipe's (the
usual 10x gap between LoRA and full fine-tuning rates); the rate used is recorded with the result.

This is the one place evaluation reaches into modeling/ and training/ (imported lazily): the
baseline *is* a second training run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..recipe import Recipe

if TYPE_CHECKING:
    from ..modeling.loading import Head

FULL_FT_LR_RATIO = 0.1


def derived_training(recipe: Recipe):
    """The recipe's training spec at the full fine-tuning learning rate."""
    rate = recipe.evaluation.full_finetune_learning_rate or recipe.training.learning_rate * FULL_FT_LR_RATIO
    return recipe.training.model_copy(update={"learning_rate": rate})


def train_full_model(recipe: Recipe, mode: str, tokenizer, prepared) -> tuple[Any, dict[str, Any]]:
    """Load a fresh copy of the base model, train all its parameters, return (model, info)."""
    from ..modeling import load_model, parameter_counts

    if recipe.quantization.method != "none":
        raise NotImplementedError("full fine-tuning cannot train a quantized model")
    head = _head(recipe, mode)
    loaded = load_model(
        recipe.model,
        recipe.quantization,
        head=head,
        labels=prepared.labels,
        multi_label=recipe.task.multi_label,
        tokenizer=tokenizer,
        pooling=recipe.task.pooling,
        task_type=recipe.task.type,
    )
    training = derived_training(recipe)
    with tempfile.TemporaryDirectory(prefix="lora-adapt-full-ft-") as tmp:
        trainer = _trainer(recipe, training, mode, loaded, tokenizer, prepared, Path(tmp))
        from ..training import run_trainer

        result = run_trainer(trainer, checkpoints=Path(tmp), resume=False, max_steps_hint=training.max_steps)
    counts = parameter_counts(trainer.model)
    info = {
        "learning_rate": training.learning_rate,
        "steps": result.global_step,
        "final_train_loss": result.final_train_loss,
        "train_s": round(result.runtime_s, 2),
        "trainable_params": counts["trainable"],
        "trainable_share": round(counts["share"], 6),
    }
    return trainer.model, info


def _head(recipe: Recipe, mode: str) -> Head:
    if mode != "head":
        return "causal_lm"
    return "token_classification" if recipe.task.type == "token_classification" else "sequence_classification"


def _trainer(recipe: Recipe, training, mode: str, loaded, tokenizer, prepared, checkpoints: Path):
    from ..modeling.hardware import bf16_supported
    from ..training import (
        common_args,
        early_stopping_callbacks,
        make_sft_trainer,
        resolve_precision,
        sft_config,
    )

    device = loaded.device
    precision = resolve_precision(training.precision, device, bf16_supported(device))
    has_val = prepared.validation is not None and len(prepared.validation) > 0
    callbacks = early_stopping_callbacks(training)
    if mode == "head":
        from transformers import TrainingArguments

        from ..training.heads import make_head_trainer

        args = TrainingArguments(
            **common_args(training, precision, checkpoints, has_validation=has_val, device=device)
        )
        return make_head_trainer(loaded.model, tokenizer, prepared, args, callbacks, recipe.task)
    args = sft_config(training, recipe.data, precision, checkpoints, has_validation=has_val, device=device)
    return make_sft_trainer(
        loaded.model, tokenizer, prepared.train, prepared.validation if has_val else None, args, callbacks
    )
