"""What a training job is built from, shared by the pipeline, the full fine-tuning baseline, the bench
and sweeps: the runtime derived from the recipe and the machine, the loaded model and prepared data,
and the trainer (TRL's SFTTrainer for generative tasks, transformers' Trainer for classifier heads)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .recipe import Recipe
from .recipe.derived import Head, Mode, head_kind, is_task_metric, resolve_loss_path, score_kind, task_mode

Echo = Callable[[str], None]
MERGE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}


@dataclass(frozen=True)
class Runtime:
    """Values derived once from the recipe and the machine; never written back into the Recipe."""

    device: str
    dtype: str
    precision: Any  # training.Precision
    head: Head
    mode: Mode
    world_size: int
    effective_batch_size: int
    loss_path: str = "chunked"  # recipe.derived.resolve_loss_path: chunked | trl | liger | head
    strategy: str = "single"  # one process; else the recipe's distributed.strategy (ddp | fsdp | deepspeed)
    sharded: bool = False  # no process holds the whole model (FSDP, ZeRO-3)

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "dtype": self.dtype,
            "precision": self.precision.name,
            "head": self.head,
            "mode": self.mode,
            "world_size": self.world_size,
            "effective_batch_size": self.effective_batch_size,
            "loss_path": self.loss_path,
            "strategy": self.strategy,
        }


def resolve_runtime(recipe: Recipe) -> Runtime:
    from .modeling.hardware import bf16_supported, dtype_name, resolve_device, resolve_dtype
    from .training import resolve_precision

    device = resolve_device(recipe.model.device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    t = recipe.training
    head = head_kind(recipe.task)
    several = world > 1
    return Runtime(
        device,
        dtype_name(resolve_dtype(recipe.model.dtype, device)),
        resolve_precision(t.precision, device, bf16_supported(device)),
        head,
        task_mode(recipe.task),
        world,
        t.batch_size * t.gradient_accumulation_steps * world,
        resolve_loss_path(t.loss_path, device, head),
        recipe.distributed.strategy if several else "single",
        several and recipe.distributed.shards_parameters,
    )


def load_model_and_data(recipe: Recipe, runtime: Runtime, echo: Echo):
    """The tokenizer, prepared data and base model as the recipe asks (seeded)."""
    from transformers import set_seed

    from .quiet import quiet_libraries

    quiet_libraries()
    set_seed(recipe.training.seed)
    tokenizer = recipe_tokenizer(recipe)
    prepared = recipe_data(recipe, tokenizer, echo=echo)
    echo(data_line(prepared))
    for warning in (prepared.stats or {}).get("warnings", []):
        echo(f"warning: {warning}")
    loaded = load_base(recipe, runtime, tokenizer, prepared.labels)
    pooled = f" ({loaded.pooling} pooling)" if runtime.head == "sequence_classification" else ""
    echo(
        f"model: {recipe.model.name_or_path} ({loaded.source.kind}) on {loaded.device}, "
        f"dtype {runtime.dtype}, quantization {loaded.quantization}, head {runtime.head}{pooled}"
    )
    return loaded, prepared


def recipe_tokenizer(recipe: Recipe):
    """The recipe's tokenizer, with `data.chat_template` applied when the recipe names one."""
    from .modeling import load_tokenizer

    tokenizer = load_tokenizer(recipe.model)
    if recipe.data.chat_template:
        from .data.templates import chat_template

        tokenizer.chat_template = chat_template(recipe.data.chat_template)
    return tokenizer


def recipe_data(recipe: Recipe, tokenizer, *, echo: Echo | None = None):
    """The recipe's prepared data through the content-addressed cache (data/cache.py): read back when an
    intact entry exists, else prepared and stored."""
    from .data.cache import prepared

    head = task_mode(recipe.task) == "head"
    return prepared(recipe.data, recipe.task, tokenizer, head=head, echo=echo)


def load_base(recipe: Recipe, runtime: Runtime, tokenizer, labels: tuple[str, ...] | None):
    """The base model with the recipe's head, labels, quantization and pooling (a new head is randomly
    initialised from the current RNG state)."""
    from .modeling import load_model

    return load_model(
        recipe.model,
        recipe.quantization,
        head=runtime.head,
        labels=labels,
        multi_label=recipe.task.multi_label,
        tokenizer=tokenizer,
        pooling=recipe.task.pooling,
        task_type=recipe.task.type,
        sharded=runtime.sharded,
    )


def plan_budget_for(recipe: Recipe, runtime: Runtime, prepared):
    """The run's epochs after `training.min_steps` (training/budget.py) on the prepared training split."""
    from .training import plan_budget

    return plan_budget(
        recipe.training,
        train_rows=len(prepared.train),
        world_size=runtime.world_size,
        head=runtime.mode == "head",
    )


def make_trainer(
    recipe: Recipe,
    runtime: Runtime,
    model,
    tokenizer,
    prepared,
    checkpoints: Path,
    callbacks,
    *,
    echo: Echo = print,
    label: str = "",
    watch: Sequence[str] = (),
    budget=None,
):
    """The trainer for ``model`` on ``prepared`` with the recipe's training settings; progress goes to
    ``echo`` (one line per logging step, or a bar on a terminal), prefixed with ``label`` when given.
    ``budget`` (default: ``plan_budget_for``) sets the epochs; when `training.min_steps` raised them,
    ``echo`` says so.

    Validation metrics at each evaluation: the loss, and in head mode every task score (the Trainer's
    ``compute_metrics``). A generative task is scored during training only when a task metric is
    watched (``training.early_stopping.metric`` or one of ``watch``: generation is slow)."""
    from .training import use_progress

    budget = budget or plan_budget_for(recipe, runtime, prepared)
    note = budget.describe(recipe.training.resolved_min_steps(head=runtime.mode == "head"))
    if note:
        echo(f"{label}: {note}" if label else note)
    if runtime.mode == "head":
        _say_class_weights(recipe, prepared, echo, label)
    watched = [*watch, *([recipe.training.early_stopping.metric] if recipe.training.early_stopping else [])]
    trainer = _trainer(
        recipe, runtime, model, tokenizer, prepared, checkpoints, callbacks, watched, echo, budget
    )
    return use_progress(trainer, echo, bar=recipe.training.progress_bar, label=label)


def _trainer(
    recipe: Recipe,
    runtime: Runtime,
    model,
    tokenizer,
    prepared,
    checkpoints: Path,
    callbacks,
    watched,
    echo,
    budget,
):
    from .training import check_loss_path, common_args, make_sft_trainer, sft_config, strategy_args

    has_val = prepared.validation is not None and len(prepared.validation) > 0
    eval_ds = prepared.validation if has_val else None
    parallel = strategy_args(recipe.distributed, world_size=runtime.world_size)
    kind = score_kind(recipe.task, runtime.mode)
    _check_binary_only(watched, prepared.labels)
    l1 = recipe.training.l1_penalty
    common = dict(has_validation=has_val, device=runtime.device, parallel=parallel, budget=budget)
    if runtime.mode == "head":
        from transformers import TrainingArguments

        from .evaluation.during_training import head_compute_metrics
        from .modeling.loading import HEAD_MODULES
        from .training.heads import make_head_trainer

        args = TrainingArguments(**common_args(recipe.training, runtime.precision, checkpoints, **common))
        rows = prepared.raw.get("validation") or []
        scaling = (prepared.stats.get("targets") or {}).get("scaling")
        metrics = (
            head_compute_metrics(
                kind,
                recipe.task,
                prepared.labels,
                rows,
                scaling,
                train_counts=(prepared.stats.get("label_counts") or {}).get("train"),
            )
            if kind and has_val
            else None
        )
        return make_head_trainer(
            model,
            tokenizer,
            prepared,
            args,
            callbacks,
            recipe.task,
            recipe.training,
            head_modules=HEAD_MODULES,
            compute_metrics=metrics,
            l1_penalty=l1,
        )
    args = sft_config(recipe.training, recipe.data, runtime.precision, checkpoints, **common)
    loss_path = check_loss_path(
        runtime.loss_path, model, device=runtime.device, explicit=recipe.training.loss_path != "auto"
    )
    if kind and has_val and any(is_task_metric(m) for m in watched):
        from .evaluation.during_training import validation_scorer

        scorer = validation_scorer(recipe, kind, tokenizer, prepared, echo)
        callbacks = [scorer, *callbacks] if scorer is not None else callbacks
    return make_sft_trainer(
        model, tokenizer, prepared.train, eval_ds, args, list(callbacks), loss_path=loss_path, l1_penalty=l1
    )


def _say_class_weights(recipe: Recipe, prepared, echo: Echo, label: str) -> None:
    """With `training.class_weights: auto` on a tagging head, say what it resolved to and why (it
    depends on the data)."""
    from .recipe.schema import AUTO_WEIGHTS_MAJORITY_SHARE
    from .training.heads import class_weight_policy

    if recipe.training.class_weights != "auto" or prepared.layout != "tagging" or recipe.task.multi_label:
        return
    policy, share = class_weight_policy(recipe.training, recipe.task, prepared)
    line = (
        f"training.class_weights auto: {policy} (the most frequent tag is {100 * share:.1f}% of the "
        f"training tags; weighted from {100 * AUTO_WEIGHTS_MAJORITY_SHARE:.0f}%)"
    )
    echo(f"{label}: {line}" if label else line)


def _check_binary_only(watched: Sequence[str], labels: Sequence[str] | None) -> None:
    """A watched binary-only metric (``f1_positive``) on data with other than two labels: refused before
    training (`validate` refuses it when task.labels names them)."""
    from .errors import UsageError
    from .recipe.derived import BINARY_ONLY_METRICS, metric_name

    wanted = sorted({metric_name(m) for m in watched} & BINARY_ONLY_METRICS)
    if wanted and len(labels or ()) != 2:
        raise UsageError(
            f"{wanted[0]} is the F1 of a binary task's positive class; this data has {len(labels or ())} labels",
            hint="watch f1_macro (training.early_stopping.metric / sweep.objective.metric) instead",
        )


def check_run_space(recipe: Recipe, counts: dict[str, Any], stage: Path) -> int:
    """The bytes the run will write (checkpoints, adapter, merged model); refused before training when they
    do not fit. What the staging folder already holds (a resumed run's checkpoints) counts as available."""
    from .diskspace import check_free_space
    from .manifest import TOKENIZER_FILES
    from .modeling.identity import local_files
    from .training.checkpoints import run_bytes

    folder = local_files(recipe.model)
    tokenizer = sum(f.stat().st_size for n in TOKENIZER_FILES if folder and (f := folder / n).is_file())
    needed = run_bytes(recipe.training, counts["trainable"], tokenizer)
    if recipe.output.merge:
        needed += counts["total"] * MERGE_BYTES[recipe.output.merge_dtype] + tokenizer
    held = sum(f.stat().st_size for f in stage.rglob("*") if f.is_file())
    check_free_space(stage, needed - held, what="the run's checkpoints, adapter and files")
    return needed


def rows_per_split(prepared) -> dict[str, int]:
    return {
        name: len(ds)
        for name, ds in (
            ("train", prepared.train),
            ("validation", prepared.validation),
            ("test", prepared.test),
        )
        if ds is not None
    }


def data_line(prepared) -> str:
    rows = ", ".join(f"{k} {v}" for k, v in rows_per_split(prepared).items())
    return f"data: {prepared.layout} layout; rows {rows}"
