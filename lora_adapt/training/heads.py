"""Classifier heads (sequence / token classification) trained with transformers' Trainer.

The LoRA adapter and the new head are trained together: peft's SEQ_CLS and TOKEN_CLS task types
add the head modules (``classifier`` for BERT-style encoders, ``score`` for Llama / Qwen2 and other
decoders) to ``modules_to_save``, so the head is trained in full and saved with the adapter.

``compute_metrics`` reports ``eval_accuracy`` and ``eval_f1`` so early stopping can watch either:
macro-F1 for single-label classification (leaving ``task.negative_label`` out, as relation scoring
does), micro-F1 for multi-label, entity-level F1 (seqeval, conlleval semantics) for tagging. A
regression head reports ``eval_mse`` (in the trained, possibly standardised, units; averaged over the
targets) and ``eval_pearson`` (mean over the targets; unaffected by the scaling).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from transformers import Trainer

from ..recipe.derived import MULTI_LABEL_LOGIT, REGRESSION_TASKS
from ..recipe.schema import TaskSpec, TrainingSpec
from .optimization import class_weights, flat_label_ids, param_groups, role_learning_rates


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
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), weight=weight, ignore_index=-100
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
):
    """A ``HeadTrainer`` for the head task of ``prepared`` (layout classification/relation/tagging)."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    tagging = prepared.layout == "tagging"
    collator = (
        DataCollatorForTokenClassification(tokenizer) if tagging else DataCollatorWithPadding(tokenizer)
    )
    has_val = prepared.validation is not None and len(prepared.validation) > 0
    weights = None
    if task.type not in REGRESSION_TASKS:
        policy = training.resolved_class_weights(tagging=tagging, multi_label=task.multi_label)
        weights = class_weights(flat_label_ids(prepared.train["labels"]), len(prepared.labels), policy)
    return HeadTrainer(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=prepared.train,
        eval_dataset=prepared.validation if has_val else None,
        processing_class=tokenizer,
        callbacks=list(callbacks),
        compute_metrics=head_metrics_fn(task, prepared.labels, tagging),
        rates=role_learning_rates(training, args.learning_rate),
        head_modules=head_modules,
        weights=weights,
    )


def head_metrics_fn(
    task: TaskSpec, labels: tuple[str, ...], tagging: bool
) -> Callable[[Any], dict[str, float]]:
    """The ``compute_metrics`` callable for a head task."""
    if task.type in REGRESSION_TASKS:
        return lambda pred: regression_scores(pred.predictions, pred.label_ids)
    if tagging:
        return lambda pred: _tagging_scores(pred.predictions, pred.label_ids, labels)
    if task.multi_label:
        return lambda pred: _multilabel_scores(pred.predictions, pred.label_ids)
    scored = [i for i, label in enumerate(labels) if label != task.negative_label]
    return lambda pred: _single_label_scores(pred.predictions, pred.label_ids, scored)


def _logits(predictions) -> np.ndarray:
    return np.asarray(predictions[0] if isinstance(predictions, tuple) else predictions)


def _single_label_scores(predictions, label_ids, scored: list[int]) -> dict[str, float]:
    from sklearn.metrics import f1_score

    pred = _logits(predictions).argmax(-1)
    gold = np.asarray(label_ids)
    f1 = f1_score(gold, pred, labels=scored, average="macro", zero_division=0)
    return {"accuracy": float((pred == gold).mean()), "f1": float(f1)}


def _multilabel_scores(predictions, label_ids) -> dict[str, float]:
    from sklearn.metrics import f1_score

    pred = (_logits(predictions) > MULTI_LABEL_LOGIT).astype(int)
    gold = np.asarray(label_ids).astype(int)
    return {
        "accuracy": float((pred == gold).all(axis=1).mean()),
        "f1": float(f1_score(gold, pred, average="micro", zero_division=0)),
    }


def _tagging_scores(predictions, label_ids, labels: tuple[str, ...]) -> dict[str, float]:
    from seqeval.metrics import f1_score

    pred = _logits(predictions).argmax(-1)
    gold = np.asarray(label_ids)
    gold_tags, pred_tags = [], []
    for p_row, g_row in zip(pred, gold, strict=True):
        keep = g_row != -100
        gold_tags.append([labels[i] for i in g_row[keep]])
        pred_tags.append([labels[i] for i in p_row[keep]])
    tokens = sum(len(t) for t in gold_tags)
    hits = sum(a == b for g, p in zip(gold_tags, pred_tags, strict=True) for a, b in zip(g, p, strict=True))
    return {
        "accuracy": hits / tokens if tokens else 0.0,
        "f1": float(f1_score(gold_tags, pred_tags, zero_division=0)),
    }


def regression_scores(predictions, label_ids) -> dict[str, float]:
    """Mean squared error and Pearson r, each averaged over the targets."""
    pred = _logits(predictions).reshape(len(label_ids), -1).astype(float)
    gold = np.asarray(label_ids, dtype=float).reshape(pred.shape)
    pearson = [
        float(np.corrcoef(pred[:, j], gold[:, j])[0, 1])
        if pred[:, j].std() > 0 and gold[:, j].std() > 0
        else 0.0
        for j in range(pred.shape[1])
    ]
    return {"mse": float(np.mean((pred - gold) ** 2)), "pearson": float(np.mean(pearson))}
