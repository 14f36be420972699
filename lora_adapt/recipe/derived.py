"""Decisions derived from a recipe, each made here once (no torch: the planner and `validate` use them).

- task mode: does the task train a classifier head or teach a causal LM to answer (``task_mode``);
- head kind: which transformers head a mode loads (``head_kind``), what the head predicts
  (``problem_type``: classes, several labels, or numbers) and how many outputs it has (``head_outputs``);
- quantization: whether a method stores the base quantized (``is_quantized``);
- benchmark modes: full / lora / qlora and the recipe each one runs (``recipe_mode``, ``mode_recipe``);
- the full fine-tuning baseline's training settings (``full_finetune_training``);
- the baseline names (``BASELINES``, from the schema's literal);
- the loss path a generative job takes on a device (``resolve_loss_path``), and whether packed rows stay
  apart under an attention implementation (``keeps_packed_rows_apart``);
- what is scored: the score kind of a task (``score_kind``), its headline metric (``HEADLINE``), the
  metrics a validation split can be watched on (``validation_metrics``) and their direction
  (``greater_is_better``).

Nothing here is written back into a Recipe: these are functions of it.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

from .schema import (
    Baseline,
    EvaluationSpec,
    ExplanationSpec,
    LossPath,
    Quantization,
    Recipe,
    TaskSpec,
    TrainingSpec,
)

Head = Literal["causal_lm", "sequence_classification", "token_classification"]
Mode = Literal["head", "generative"]
BenchMode = Literal["full", "lora", "qlora"]
ResolvedLossPath = Literal["chunked", "trl", "liger", "head"]

HEADS: tuple[Head, ...] = get_args(Head)
LOSS_PATHS: tuple[str, ...] = tuple(p for p in get_args(LossPath) if p != "auto")
AUTO_LOSS_PATH: dict[str, str] = {"cuda": "trl"}
"""`training.loss_path: auto` per device (any other device: `chunked`). On CUDA, TRL's fused head until the
GPU benchmark's loss-path arms (benchmarks/gpu_bench.sh) show `liger` or `chunked` faster."""
BENCH_MODES: tuple[BenchMode, ...] = get_args(BenchMode)
BASELINES: tuple[str, ...] = get_args(Baseline)
QUANTIZED_METHODS: tuple[str, ...] = tuple(m for m in get_args(Quantization) if m != "none")
HEAD_KINDS: dict[str, Head] = {
    "classification": "sequence_classification",
    "regression": "sequence_classification",
    "relation_classification": "sequence_classification",
    "token_classification": "token_classification",
}
"""Task types that can train a head (classifier or regressor), and the head each one loads."""
REGRESSION_TASKS: tuple[str, ...] = ("regression",)
"""Task types whose head predicts numbers (MSE loss, one output per target) instead of classes."""
DEFAULT_TARGET = "label"
"""A regression task without task.targets predicts the canonical ``label`` column."""
AUTO_CLASSES: dict[Head, str] = {
    "causal_lm": "AutoModelForCausalLM",
    "sequence_classification": "AutoModelForSequenceClassification",
    "token_classification": "AutoModelForTokenClassification",
}
"""The transformers auto class of each head (its name is what manifest.json records)."""
MULTI_LABEL_THRESHOLD = 0.5
"""Multi-label classification: a label is predicted when its sigmoid probability exceeds this."""
MULTI_LABEL_LOGIT = math.log(MULTI_LABEL_THRESHOLD / (1 - MULTI_LABEL_THRESHOLD))
"""The same threshold on the logit (0.0 for 0.5), which is what heads output."""
FULL_FT_LR_RATIO = 0.1
"""Full fine-tuning's default learning rate relative to the adapter's (it diverges at LoRA rates)."""


def task_mode(task: TaskSpec) -> Mode:
    """`auto`: a head for the classification task types, generation for sft and extraction."""
    if task.mode != "auto":
        return task.mode
    return "head" if task.type in HEAD_KINDS else "generative"


def head_kind(task: TaskSpec) -> Head:
    """The transformers head the task trains: a classifier in head mode, else the causal LM head."""
    return head_for(task.type, task_mode(task))


def head_for(task_type: str, mode: str) -> Head:
    return HEAD_KINDS.get(task_type, "causal_lm") if mode == "head" else "causal_lm"


def problem_type(task_type: str, multi_label: bool = False) -> str:
    """transformers' ``problem_type`` for a head of this task (it picks the loss: MSE, BCE or cross-entropy)."""
    if task_type in REGRESSION_TASKS:
        return "regression"
    return "multi_label_classification" if multi_label else "single_label_classification"


def target_names(task: TaskSpec) -> tuple[str, ...]:
    """Regression: the targets a head predicts, in output order."""
    return tuple(task.targets) if task.targets else (DEFAULT_TARGET,)


def target_scaling(task: TaskSpec) -> str:
    """What a regression head trains on: ``task.target_scaling``, standardised targets by default."""
    return task.target_scaling or "standardize"


def explanation_settings(evaluation: EvaluationSpec) -> ExplanationSpec:
    """The report's explanation settings: ``evaluation.explanations``, else the ExplanationSpec defaults."""
    return evaluation.explanations or ExplanationSpec()


def head_outputs(task: TaskSpec) -> int | None:
    """Outputs of the task's head known from the recipe alone (targets, or listed labels); None when the
    label set comes from the data."""
    if task.type in REGRESSION_TASKS:
        return len(target_names(task))
    return len(task.labels) if task.labels else None


def head_of_auto_class(name: str | None) -> Head:
    """The head whose auto class is ``name`` (as recorded in manifest.json); causal LM when unknown."""
    return next((head for head, cls in AUTO_CLASSES.items() if cls == name), "causal_lm")


VARLEN_ATTENTION = (
    "flash_attention_2",
    "flash_attention_3",
    "kernels-community/flash-attn",
    "paged_attention",
)
"""Attention implementations that read packed documents as variable-length sequences: TRL's one-row packed
layout costs them nothing, so it is kept (training/packing.py)."""


def keeps_packed_rows_apart(attn_implementation: str | None) -> bool:
    """Whether packing keeps each packed sequence its own batch row under this attention implementation
    (anything but a variable-length kernel: then attention gets a per-document boolean mask)."""
    return not (attn_implementation or "").startswith(VARLEN_ATTENTION)


def resolve_loss_path(requested: str, device: str, head: Head = "causal_lm") -> ResolvedLossPath:
    """The loss path a job takes: `head` for classifier heads (their logits are `[tokens, labels]`),
    else the recipe's choice, `auto` by device (``AUTO_LOSS_PATH``)."""
    if head != "causal_lm":
        return "head"
    chosen = AUTO_LOSS_PATH.get(device, "chunked") if requested == "auto" else requested
    return chosen  # type: ignore[return-value]


def is_quantized(method: str | None) -> bool:
    return method in QUANTIZED_METHODS


def recipe_mode(recipe: Recipe) -> BenchMode:
    """The benchmark mode the recipe itself describes."""
    return "qlora" if is_quantized(recipe.quantization.method) else "lora"


def full_finetune_training(recipe: Recipe) -> TrainingSpec:
    """The recipe's training settings at the full fine-tuning rate (evaluation.full_finetune_learning_rate,
    default FULL_FT_LR_RATIO x training.learning_rate)."""
    rate = recipe.evaluation.full_finetune_learning_rate or recipe.training.learning_rate * FULL_FT_LR_RATIO
    return recipe.training.model_copy(update={"learning_rate": rate})


def mode_recipe(recipe: Recipe, mode: str) -> Recipe:
    """The recipe run in one benchmark mode, everything else unchanged: `full` drops quantization and trains
    at the full fine-tuning rate, `lora` drops quantization, `qlora` keeps the recipe's method (NF4 if none)."""
    if mode not in BENCH_MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {BENCH_MODES}")
    own = recipe.quantization.method
    method = own if mode == "qlora" and is_quantized(own) else ("nf4" if mode == "qlora" else "none")
    update: dict = {"quantization": recipe.quantization.model_copy(update={"method": method})}
    if mode == "full":
        update["training"] = full_finetune_training(recipe)
    return recipe.model_copy(update=update)


HEADLINE: dict[str, str] = {
    "single": "f1_macro",
    "multi": "f1_macro",
    "relation": "f1_macro_official",
    "tagging": "f1",
    "entities": "f1",
    "extraction": "field_f1",
    "regression": "pearson",
}
"""The headline metric of each score kind (see ``score_kind``)."""
_PRF = tuple(f"{m}_{avg}" for m in ("precision", "recall", "f1") for avg in ("macro", "micro", "weighted"))
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "single": ("accuracy", *_PRF, "f1_positive"),
    "multi": ("subset_accuracy", "f1_samples", *_PRF),
    "relation": (
        "accuracy",
        *_PRF,
        *(
            f"{m}_macro_{scorer}"
            for m in ("precision", "recall", "f1")
            for scorer in ("official", "directed")
        ),
        "f1_micro_official",
        "f1_micro_directed",
        "f1_positive",
    ),
    "tagging": ("precision", "recall", "f1", "f1_macro", "token_accuracy"),
    "entities": ("precision", "recall", "f1", "f1_macro"),
    "extraction": ("exact_match", "field_precision", "field_recall", "field_f1"),
    "regression": ("pearson", "spearman", "mse", "rmse", "mae"),
}
"""The scalar scores evaluation reports for each kind (counts such as `n` left out): the names early
stopping and sweeps may watch. tests/test_sweep_recipe.py checks them against evaluation's output.
``f1_positive`` (the positive class's F1) exists for binary tasks only (BINARY_ONLY_METRICS): watching it
on a task with more labels is refused when the labels are known, before training."""
BINARY_ONLY_METRICS = frozenset({"f1_positive"})
LOSS = "loss"
LOWER_IS_BETTER = frozenset({LOSS, "mse", "rmse", "mae"})


def score_kind(task: TaskSpec, mode: str) -> str | None:
    """How a task is scored (a key of HEADLINE), or None for sft (loss only)."""
    if task.type == "classification":
        return "multi" if task.multi_label else "single"
    if task.type == "relation_classification":
        return "relation"
    if task.type == "token_classification":
        return "tagging" if mode == "head" else "entities"
    if task.type == "extraction":
        return "extraction"
    if task.type == "regression":
        return "regression"
    return None


def validation_metrics(task: TaskSpec) -> tuple[str, ...]:
    """What a validation split can be watched on: its loss and the task's scores."""
    kind = score_kind(task, task_mode(task))
    return (LOSS, *(TASK_METRICS[kind] if kind else ()))


def metric_name(metric: str) -> str:
    """`eval_f1_macro` -> `f1_macro` (transformers prefixes validation metrics with `eval_`)."""
    return metric.removeprefix("eval_")


def headline_metric(task: TaskSpec) -> str:
    """The metric a task is judged on: its headline score, or the loss for sft."""
    kind = score_kind(task, task_mode(task))
    return HEADLINE[kind] if kind else LOSS


def greater_is_better(metric: str) -> bool:
    return metric_name(metric) not in LOWER_IS_BETTER


def is_task_metric(metric: str) -> bool:
    """A score computed from predictions (not the loss the trainer computes anyway)."""
    return metric_name(metric) != LOSS
