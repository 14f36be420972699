"""Recipe training section -> transformers/TRL argument objects. Pure translators, unit-tested."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..recipe.derived import greater_is_better, metric_name
from ..recipe.schema import TrainingSpec
from .budget import Budget


@dataclass(frozen=True)
class Precision:
    """Mixed-precision flags, decided once from the recipe and the device."""

    bf16: bool
    fp16: bool

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "fp32"


def resolve_precision(requested: str, device: str, bf16_ok: bool) -> Precision:
    if requested == "auto":
        if device == "cuda":
            return Precision(bf16=bf16_ok, fp16=not bf16_ok)
        return Precision(False, False)
    return Precision(bf16=requested == "bf16", fp16=requested == "fp16")


def common_args(
    spec: TrainingSpec,
    precision: Precision,
    output_dir: Path,
    *,
    has_validation: bool,
    device: str,
    parallel: dict[str, Any] | None = None,
    budget: Budget | None = None,
) -> dict[str, Any]:
    """Arguments shared by SFTConfig and TrainingArguments (heads), all explicit; ``parallel`` adds the
    distributed strategy's (``training.strategy.strategy_args``).

    ``budget`` (see budget.plan_budget): the epochs after ``training.min_steps``, and the evaluation
    spacing when it raised them."""
    evaluate = has_validation
    eval_steps = spec.eval_steps or (budget.eval_steps if budget is not None else None)
    strategy = "steps" if eval_steps else "epoch"
    save_strategy = "steps" if (spec.save_steps or eval_steps) else "epoch"
    args: dict[str, Any] = dict(
        output_dir=str(output_dir),
        num_train_epochs=spec.epochs if budget is None else budget.epochs,
        max_steps=spec.max_steps or -1,
        learning_rate=spec.learning_rate,
        lr_scheduler_type=spec.scheduler,
        warmup_steps=spec.warmup_ratio,
        per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=spec.eval_batch_size or spec.batch_size,
        gradient_accumulation_steps=spec.gradient_accumulation_steps,
        gradient_checkpointing=spec.gradient_checkpointing,
        weight_decay=spec.weight_decay,
        max_grad_norm=spec.max_grad_norm,
        optim=spec.optimizer,
        bf16=precision.bf16,
        fp16=precision.fp16,
        seed=spec.seed,
        data_seed=spec.seed,
        eval_strategy=strategy if evaluate else "no",
        eval_steps=eval_steps,
        save_strategy=save_strategy,
        save_steps=spec.save_steps or eval_steps or 500,
        save_total_limit=spec.save_total_limit,
        logging_steps=spec.logging_steps,
        logging_first_step=True,
        # a NaN/inf loss is logged as it is (by default transformers logs the mean of the previous ones
        # instead), so that the divergence guard and the history see it
        logging_nan_inf_filter=False,
        # TensorBoard gets its own callback writing into the run's logs/ (see logging_callbacks)
        report_to=[spec.report_to] if spec.report_to == "wandb" else [],
        disable_tqdm=not spec.progress_bar,
        neftune_noise_alpha=spec.neftune_noise_alpha,
        label_smoothing_factor=spec.label_smoothing,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        **(parallel or {}),
    )
    if spec.gradient_checkpointing:
        args["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
    if spec.early_stopping is not None and evaluate:
        metric = metric_name(spec.early_stopping.metric)
        # keeping the best adapter needs a checkpoint at every evaluation
        args.update(
            load_best_model_at_end=True,
            metric_for_best_model=f"eval_{metric}",
            save_strategy=strategy,
            greater_is_better=greater_is_better(metric),
        )
    return args
