"""What a distributed launch needs from the machine and the launcher, checked before anything is loaded.

The recipe alone is checked in ``recipe/sharding.py`` (`lora-adapt validate` runs those rules); these
need the installed packages, the hardware and the launcher's environment. ``missing_packages`` imports no
torch (`validate` reports it as a note: the recipe may be meant for another machine)."""

from __future__ import annotations

import importlib.util
import os

from ..errors import RecipeError, UsageError
from ..recipe.derived import task_mode
from ..recipe.schema import Recipe

ACCELERATE_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def missing_packages(recipe: Recipe) -> list[str]:
    """Packages the recipe's distributed strategy needs that are not installed here."""
    if recipe.distributed.strategy == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        return ["deepspeed"]
    return []


def check_launch(recipe: Recipe, *, device: str, world_size: int, dtype: str, precision: str) -> None:
    """Refuse a launch of ``world_size`` processes that would fail later or silently do something else."""
    problems = _hardware_problems(recipe, device) + _launcher_problems(recipe, precision)
    problems += _dtype_problems(recipe, dtype) + _evaluation_problems(recipe)
    if device == "cuda":
        problems += _gpu_count_problems(world_size)
    if problems:
        raise RecipeError(problems, source=f"a launch of {world_size} processes")
    for name in missing_packages(recipe):
        raise UsageError(
            f"distributed.strategy '{recipe.distributed.strategy}' needs the {name} package, which is not "
            "installed",
            hint=f"pip install {name} (on a machine with CUDA), or use distributed.strategy: ddp or fsdp",
        )


def _hardware_problems(recipe: Recipe, device: str) -> list[str]:
    strategy = recipe.distributed.strategy
    if device == "mps":
        return ["several processes need CUDA GPUs or the CPU (gloo); MPS has no multi-process backend"]
    if device != "cpu":
        return []
    if strategy == "fsdp":
        return [
            "distributed.strategy 'fsdp' needs GPUs: accelerate runs FSDP only on accelerators and would "
            "silently fall back to DDP on the CPU; use distributed.strategy: ddp for several CPU processes"
        ]
    if strategy == "deepspeed":
        return ["distributed.strategy 'deepspeed' needs GPUs; use distributed.strategy: ddp on the CPU"]
    return []


def _launcher_problems(recipe: Recipe, precision: str) -> list[str]:
    """An `accelerate launch --config_file` sets the strategy and mixed precision through the environment;
    the recipe decides both, so a launcher asking for something else is refused rather than overridden."""
    problems = []
    strategy = recipe.distributed.strategy
    for env, name in (("ACCELERATE_USE_FSDP", "fsdp"), ("ACCELERATE_USE_DEEPSPEED", "deepspeed")):
        if _env_true(env) and strategy != name:
            problems.append(
                f"the launcher's accelerate config asks for {name.upper()} ({env}=true) but the recipe's "
                f"distributed.strategy is '{strategy}'; set distributed.strategy: {name}, or launch without "
                "that config (`lora-adapt run --num-processes N` or `torchrun`)"
            )
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    wanted = ACCELERATE_PRECISION[precision]
    if launched not in ("", "no", wanted):
        problems.append(
            f"the launcher asks for mixed precision '{launched}' but the recipe trains in {precision} "
            f"(training.precision); set training.precision: {launched}, or launch with --mixed_precision {wanted}"
        )
    return problems


def _dtype_problems(recipe: Recipe, dtype: str) -> list[str]:
    """FSDP + QLoRA (and ZeRO-3 + QLoRA) store the 4-bit weights in the compute dtype, which must then be
    the dtype of every other weight: checked here once `auto` has a value on this machine."""
    q = recipe.quantization
    compute = dtype if q.compute_dtype == "auto" else q.compute_dtype
    if recipe.distributed.shards_parameters and q.method in ("nf4", "fp4") and compute != dtype:
        return [
            f"sharded QLoRA needs quantization.compute_dtype ({compute}) equal to the model's dtype on this "
            f"machine ({dtype}); set model.dtype and quantization.compute_dtype to the same value"
        ]
    return []


def _evaluation_problems(recipe: Recipe) -> list[str]:
    """With adapter.bias 'all' or 'lora_only' training changes the base model's biases, so the loss before
    training must be measured before training; a distributed Trainer that evaluates before training then
    trains without synchronising gradients (accelerate keeps the model as prepared for evaluation)."""
    generative = task_mode(recipe.task) == "generative"
    if generative and recipe.evaluation.perplexity and recipe.adapter.bias != "none":
        return [
            f"adapter.bias '{recipe.adapter.bias}' trains the base model's biases, so the loss before training "
            "would have to be measured before training, which breaks a distributed Trainer's gradient "
            "synchronisation; set evaluation.perplexity: false or adapter.bias: none"
        ]
    return []


def _gpu_count_problems(world_size: int) -> list[str]:
    import torch

    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    visible = torch.cuda.device_count()
    if per_node > visible:
        return [
            f"{per_node} processes on this machine but only {visible} CUDA GPU(s) are visible: one per GPU"
        ]
    return []


def _env_true(name: str) -> bool:
    return os.environ.get(name, "false").strip().lower() in ("1", "true", "yes")
