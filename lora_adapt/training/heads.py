"""Classifier heads (sequence / token classification) trained with transformers' Trainer.

The LoRA adapter and the new head are trained together: peft's SEQ_CLS and TOKEN_CLS task types
add the head modules (``classifier`` for BERT-style encoders, ``score`` for Llama / Qwen2 and other
decoders) to ``modules_to_save``, so the head is trained in full and saved with the adapter.

``compute_metrics`` comes from the caller (the runtime builds it from evaluation's scorer), so every
metric the task's evaluation reports is a validation metric at each evaluation (``eval_f1_macro``,
``eval_f1_macro_official``, ``eval_f1``, ``eval_pearson``, ``eval_mse``, ...) that early stopping and sweeps
can watch (a regression head's outputs are decoded to the data's units first, as the final evaluation
decodes them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .penalties import penalized


def make_head_trainer(
    model,
    tokenizer,
    prepared,
    args,
    callbacks,
    *,
    compute_metrics: Callable[[Any], dict[str, float]] | None = None,
    l1_penalty: float = 0.0,
):
    """A ``transformers.Trainer`` (with the L1 penalty of training/penalties.py) for the head task of
    ``prepared`` (layout classification/relation/tagging)."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding, Trainer

    tagging = prepared.layout == "tagging"
    collator = (
        DataCollatorForTokenClassification(tokenizer) if tagging else DataCollatorWithPadding(tokenizer)
    )
    has_val = prepared.validation is not None and len(prepared.validation) > 0
    return penalized(Trainer)(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=prepared.train,
        eval_dataset=prepared.validation if has_val else None,
        processing_class=tokenizer,
        callbacks=list(callbacks),
        compute_metrics=compute_metrics if has_val else None,
        l1_penalty=l1_penalty,
    )
