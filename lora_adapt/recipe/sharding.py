"""Which recipe settings cannot run under a distributed strategy, decided from the recipe alone (no torch),
so that `lora-adapt validate` refuses them before any process starts.

What needs the machine (GPUs, installed packages, the launcher's own configuration) is checked when a run
starts, in ``lora_adapt.distributed``. The rules follow what the libraries require: FSDP shards only
floating-point storage, so a 4-bit base is stored in its compute dtype (bitsandbytes' ``quant_storage``;
peft's and bitsandbytes' FSDP-QLoRA guides) and 8-bit LLM.int8 weights cannot be sharded (LLaMA-Factory
refuses them too); a model whose parameters are sharded cannot be scored by one process afterwards."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .schema import Recipe

FOUR_BIT = ("nf4", "fp4")


def sharding_problems(recipe: Recipe) -> list[str]:
    """Problems of running ``recipe`` under its ``distributed`` section (empty when it can run)."""
    d = recipe.distributed
    problems: list[str] = []
    if d.shards_parameters:
        problems += _sharded_parameter_problems(recipe)
    if d.strategy == "fsdp" and d.fsdp.activation_checkpointing and recipe.training.gradient_checkpointing:
        problems.append(
            "distributed.fsdp.activation_checkpointing and training.gradient_checkpointing are both on; "
            "keep only distributed.fsdp.activation_checkpointing (the other gathers each layer twice)"
        )
    if (
        d.strategy == "deepspeed"
        and d.deepspeed.offload_optimizer
        and recipe.training.optimizer != "adamw_torch"
    ):
        problems.append(
            "distributed.deepspeed.offload_optimizer runs DeepSpeed's CPU AdamW, not training.optimizer "
            f"'{recipe.training.optimizer}'; set training.optimizer: adamw_torch or turn the offload off"
        )
    if d.strategy == "deepspeed" and d.deepspeed.offload_optimizer:
        problems += _one_learning_rate_problems(recipe)
    if d.strategy == "deepspeed" and recipe.model.device == "cpu":
        problems.append(
            "distributed.strategy 'deepspeed' does not run on model.device 'cpu' (ZeRO needs GPUs); "
            "use distributed.strategy: ddp for several CPU processes"
        )
    return problems


def _sharded_parameter_problems(recipe: Recipe) -> list[str]:
    d, q = recipe.distributed, recipe.quantization
    name = "fsdp" if d.strategy == "fsdp" else "deepspeed stage 3"
    problems = []
    if q.method == "int8":
        problems.append(
            f"distributed.strategy {name} cannot shard 8-bit (LLM.int8) weights; use quantization.method: "
            "nf4 (FSDP + QLoRA) or distributed.strategy: ddp"
        )
    dtype, compute = recipe.model.dtype, q.compute_dtype
    if q.method in FOUR_BIT and "auto" not in (dtype, compute) and dtype != compute:
        problems.append(
            f"{name} + QLoRA stores the 4-bit weights in the compute dtype so they shard with the others: "
            f"model.dtype ({dtype}) must equal quantization.compute_dtype ({compute}); set both to bf16"
        )
    if "full_finetune" in recipe.evaluation.baselines:
        problems.append(
            f"evaluation.baselines 'full_finetune' cannot be scored after {name} training (its parameters "
            "end up split across processes); drop it, or use distributed.strategy: ddp"
        )
    if recipe.task.type != "sft" and recipe.evaluation.enabled:
        problems.append(
            f"task evaluation runs in one process, which does not hold the {name}-sharded model; set "
            "evaluation.enabled: false and score the run afterwards with `lora-adapt eval RUN_DIR`"
        )
    return problems


def _one_learning_rate_problems(recipe: Recipe) -> list[str]:
    """DeepSpeed's offloaded optimizer is built from its config with one group at training.learning_rate
    (transformers' deepspeed_optim_sched never calls the Trainer's create_optimizer): per-role rates would
    be dropped without a word."""
    from .schema import _trains_a_head

    t, rates = recipe.training, []
    head_ratio = t.resolved_head_lr_ratio(recipe.task.type)
    if _trains_a_head(recipe.task) and head_ratio != 1:
        rates.append(f"training.head_lr_ratio ({head_ratio:g}: the new head at that multiple of the rate)")
    if t.lora_plus_ratio != 1:
        rates.append(f"training.lora_plus_ratio ({t.lora_plus_ratio:g}: LoRA+ B matrices)")
    if not rates:
        return []
    return [
        "distributed.deepspeed.offload_optimizer steps DeepSpeed's own AdamW with one learning rate for every "
        f"parameter, so {' and '.join(rates)} would be ignored; set them to 1, or turn the offload off"
    ]
