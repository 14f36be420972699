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

from transformers import Trainer

from ..recipe.derived import REGRESSION_TASKS
from ..recipe.schema import TaskSpec, TrainingSpec
from .optimization import (
    class_weights,
    flat_label_ids,
    majority_share,
    param_groups,
    role_learning_rates,
)
from .penalties import penalized


class HeadTrainer(Trainer):
    """transformers' Trainer with per-role learning rates and an optional class-weighted loss.

    The optimizer is still the Trainer's (``create_optimizer`` with ``optimizer_cls_and_kwargs``
    carrying our param groups); with class weights, ``compute_loss`` computes the weighted
    cross-entropy from the logits as a per-batch mean (the Trainer scales it for accumulation).
    """

    def __init__(self, *args, rates: dict[str, float], head_modules: tuple[str, ...], weights=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.role_rates = rates
        self.head_modules = head_modules
        self.class_weights = weights
        if weights is not None:
            self.loss_is_scaled_for_ga = False

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            groups = param_groups(
                opt_model.named_parameters(),
                self.get_decay_parameter_names(opt_model),
                self.role_rates,
                self.args.weight_decay,
                self.head_modules,
            )
            self.optimizer_cls_and_kwargs = (cls, {**kwargs, "params": groups})
        return super().create_optimizer(model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.class_weights is None or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        import torch

        labels = inputs["labels"]
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        weight = torch.tensor(self.class_weights, dtype=logits.dtype, device=logits.device)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            labels.reshape(-1),
            weight=weight,
            ignore_index=-100,
            label_smoothing=self.args.label_smoothing_factor,  # the Trainer's smoother is bypassed here
        )
        return (loss, outputs) if return_outputs else loss


def make_head_trainer(
    model,
    tokenizer,
    prepared,
    args,
    callbacks,
    task: TaskSpec,
    training: TrainingSpec,
    *,
    head_modules: tuple[str, ...],
    compute_metrics: Callable[[Any], dict[str, float]] | None = None,
    l1_penalty: float = 0.0,
):
    """A ``HeadTrainer`` (with the L1 penalty of training/penalties.py) for the head task of ``prepared``
    (layout classification/relation/tagging)."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    tagging = prepared.layout == "tagging"
    collator = (
        DataCollatorForTokenClassification(tokenizer) if tagging else DataCollatorWithPadding(tokenizer)
    )
    has_val = prepared.validation is not None and len(prepared.validation) > 0
    weights = None
    if task.type not in REGRESSION_TASKS:
        policy, _ = class_weight_policy(training, task, prepared)
        weights = class_weights(flat_label_ids(prepared.train["labels"]), len(prepared.labels), policy)
    return penalized(HeadTrainer)(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=prepared.train,
        eval_dataset=prepared.validation if has_val else None,
        processing_class=tokenizer,
        callbacks=list(callbacks),
        compute_metrics=compute_metrics if has_val else None,
        l1_penalty=l1_penalty,
        rates=role_learning_rates(training, args.learning_rate, task.type),
        head_modules=head_modules,
        weights=weights,
    )


def class_weight_policy(training: TrainingSpec, task: TaskSpec, prepared) -> tuple[str, float | None]:
    """`training.class_weights` resolved for the head of ``prepared``, and the share of the training split's
    most frequent label it was resolved by (the prepared data's label counts: words for tagging, as the
    report shows them)."""
    share = majority_share((prepared.stats.get("label_counts") or {}).get("train") or {})
    tagging = prepared.layout == "tagging"
    return training.resolved_class_weights(
        tagging=tagging, multi_label=task.multi_label, majority_share=share
    ), share
