"""The recipe's ``distributed`` section -> the Trainer arguments that select DDP, FSDP or DeepSpeed.

The Trainer builds accelerate's plugins from these (``TrainingArguments.fsdp_config`` -> accelerate's
``FullyShardedDataParallelPlugin``; ``TrainingArguments.deepspeed`` -> ``HfTrainerDeepSpeedConfig``), so
any launcher that starts the processes (`torchrun`, `accelerate launch`) runs the strategy the recipe
names. Mixed precision is not set here: the Trainer's bf16 / fp16 flags (the recipe's training.precision)
reach every strategy (FSDP's mixed-precision policy, DeepSpeed's "auto" fields). Pure translators."""

from __future__ import annotations

from typing import Any

from ..recipe.schema import DeepSpeedSpec, DistributedSpec, FsdpSpec


def strategy_args(spec: DistributedSpec, *, world_size: int) -> dict[str, Any]:
    """Extra TrainingArguments for ``world_size`` processes (none for one process)."""
    if world_size <= 1:
        return {}
    if spec.strategy == "fsdp":
        return {"fsdp": True, "fsdp_config": fsdp_config(spec.fsdp)}
    if spec.strategy == "deepspeed":
        return {"deepspeed": deepspeed_config(spec.deepspeed)}
    # every trainable tensor (LoRA, DoRA magnitudes, modules_to_save) gets a gradient at each step: DDP
    # need not search the graph for unused parameters
    return {"ddp_find_unused_parameters": False}


def fsdp_config(spec: FsdpSpec) -> dict[str, Any]:
    """FSDP2 (per-parameter sharding, so frozen and trainable LoRA weights share a layer's unit). Each
    transformer layer (the model's ``_no_split_modules``) is its own unit; the embedding and the head get
    their own from accelerate. The adapter is saved from a full state dict gathered on the main process."""
    return {
        "version": 2,
        "reshard_after_forward": spec.sharding == "full_shard",
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "cpu_ram_efficient_loading": spec.cpu_ram_efficient_loading,
        "activation_checkpointing": spec.activation_checkpointing,
        "cpu_offload": spec.cpu_offload,
        "state_dict_type": "FULL_STATE_DICT",
    }


def deepspeed_config(spec: DeepSpeedSpec) -> dict[str, Any]:
    """A ZeRO config whose "auto" fields the Trainer fills from the recipe (batch sizes, accumulation,
    clipping, bf16 / fp16); with the optimizer offloaded, DeepSpeed's CPU AdamW steps on the CPU."""
    zero: dict[str, Any] = {"stage": spec.stage, "overlap_comm": True, "contiguous_gradients": True}
    config: dict[str, Any] = {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
    }
    if spec.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        config["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"},
        }
    if spec.offload_parameters:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if spec.stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # the adapter is saved from gathered weights
    return config
