"""What one planned training job is: the recipe's choices resolved for a mode (full / lora / qlora) and
a target device, in one frozen value the estimator reads and the advisor varies with `replace`."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import UsageError
from ..recipe.derived import (
    BENCH_MODES,
    head_kind,
    head_outputs,
    is_quantized,
    keeps_packed_rows_apart,
    mode_recipe,
    resolve_loss_path,
)
from ..recipe.schema import Recipe
from .sharding import parallel_fields

MODES: tuple[str, ...] = BENCH_MODES
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass(frozen=True)
class Settings:
    """A training job as the memory estimate sees it."""

    mode: str  # "full" | "lora" | "qlora"
    device: str = "cuda"  # "cuda" | "cpu"
    param_dtype: str = "bf16"  # unquantized weights as loaded
    precision: str = "bf16"  # mixed-precision autocast dtype; == param_dtype or "fp32" means no autocast
    quantization: str = "none"  # "none" | "nf4" | "fp4" | "int8"
    double_quant: bool = True
    upcast_unquantized: bool = (
        True  # prepare_model_for_kbit_training (lora-adapt calls it): unquantized -> fp32
    )
    adapter_method: str = "lora"  # "lora" | "dora" (ignored in full mode)
    rank: int = 16
    target_modules: str | tuple[str, ...] = "all-linear"
    lora_dropout: float = 0.05
    adapter_dtype: str = (
        "fp32"  # LoRA A/B as trained: peft upcasts them to fp32; TRL casts QLoRA ones to bf16
    )
    modules_to_save: tuple[str, ...] = ()
    optimizer: str = "adamw_torch"
    gradient_checkpointing: bool = False
    seq_len: int = 512
    micro_batch: int = 8
    grad_accum: int = 1
    attention: str = "sdpa"  # "sdpa" | "eager" | "flash_attention_2"
    head: str = "causal_lm"  # "causal_lm" | "sequence_classification" | "token_classification"
    num_labels: int = 2
    loss_path: str = "trl"  # recipe.derived.resolve_loss_path (chunked | trl | liger | head), or "logits"
    # (full logits + cross-entropy, as a hand-written loop computes it)
    padded: bool = True  # attention gets a boolean mask: padding (micro-batch > 1) or packed documents
    num_gpus: int = 1  # GPUs sharing the job, each with `micro_batch` (planner/sharding.py)
    strategy: str = "single"  # "single" | "ddp" | "fsdp" | "deepspeed"
    shard: tuple[str, ...] = ()  # what is divided across the GPUs: "params", "grads", "optimizer"
    offload: tuple[str, ...] = ()  # what lives in CPU RAM instead of on the GPU
    sharded_model: bool = False  # FSDP / ZeRO-3 (a 4-bit base is then not prepared for k-bit training)

    @property
    def quantized(self) -> bool:
        return is_quantized(self.quantization)

    @property
    def adapter(self) -> bool:
        return self.mode != "full"

    @property
    def autocast(self) -> bool:
        """The Trainer runs forward and backward under autocast whenever bf16/fp16 training is on."""
        return self.precision != "fp32"

    @property
    def compute_dtype(self) -> str:
        return self.precision if self.autocast else self.param_dtype

    @property
    def tokens(self) -> int:
        return self.seq_len * self.micro_batch


def dtype_name(value: str, device: str) -> str:
    """A recipe dtype as the estimate assumes it: `auto` -> bf16 on a GPU (one that has it), fp32 on a CPU."""
    if value != "auto":
        return value
    return "bf16" if device == "cuda" else "fp32"


def settings_for(
    recipe: Recipe,
    mode: str,
    *,
    device: str = "cuda",
    seq_len: int | None = None,
    micro_batch: int | None = None,
    loss_path: str | None = None,
    num_gpus: int = 1,
    strategy: str | None = None,
) -> Settings:
    """Resolve the recipe for `mode`: full drops the adapter and quantization, lora drops quantization,
    qlora keeps the recipe's quantization (nf4 when it has none). ``num_gpus`` GPUs share the job under
    ``strategy`` (default: the recipe's distributed.strategy)."""
    if mode not in MODES:
        raise UsageError(f"unknown mode '{mode}'", hint=f"modes are {', '.join(MODES)}")
    parallel = parallel_fields(recipe.distributed, strategy or recipe.distributed.strategy, num_gpus)
    head = head_kind(recipe.task)
    planned = mode_recipe(recipe, mode)
    tr, ad = recipe.training, recipe.adapter
    quant = planned.quantization.method
    param_dtype = dtype_name(recipe.model.dtype, device)
    batch = micro_batch or tr.batch_size
    return Settings(
        mode=mode,
        device=device,
        param_dtype=param_dtype,
        precision=dtype_name(tr.precision, device),
        quantization=quant,
        double_quant=recipe.quantization.double_quant,
        adapter_method=ad.method,
        rank=ad.rank,
        target_modules=ad.target_modules,
        lora_dropout=ad.dropout,
        modules_to_save=ad.modules_to_save,
        optimizer=tr.optimizer,
        gradient_checkpointing=tr.gradient_checkpointing
        or (parallel["strategy"] == "fsdp" and recipe.distributed.fsdp.activation_checkpointing),
        seq_len=seq_len or recipe.data.max_seq_length,
        micro_batch=batch,
        grad_accum=tr.gradient_accumulation_steps,
        attention="sdpa" if recipe.model.attn_implementation == "auto" else recipe.model.attn_implementation,
        adapter_dtype=adapter_dtype(quant, head, param_dtype),
        head=head,
        num_labels=head_outputs(recipe.task) or 2,
        loss_path=loss_path or resolve_loss_path(tr.loss_path, device, head),
        padded=_masked(batch, tr.packing, recipe.model.attn_implementation),
        upcast_unquantized=not parallel["sharded_model"],
        **parallel,
    )


def _masked(batch: int, packing: bool, attention: str) -> bool:
    """Whether attention gets a boolean mask: a padding mask for unpacked batches of several rows; with packing
    (training/packing.py), the per-document mask transformers builds from the position ids, except under flash
    attention's variable-length kernels."""
    if packing:
        return keeps_packed_rows_apart(attention)
    return batch > 1


def adapter_dtype(quantization: str, head: str, param_dtype: str) -> str:
    """peft creates LoRA weights in fp32 over a bf16/fp16 base (`autocast_adapter_dtype`); TRL's SFTTrainer
    then casts the LoRA weights of a quantized model to bf16 (QLoRA paper, section 3), even on a CPU."""
    if is_quantized(quantization) and head == "causal_lm":
        return "bf16"
    return "fp32" if param_dtype in ("bf16", "fp16") else param_dtype


def vary(settings: Settings, **changes) -> Settings:
    return replace(settings, **changes)
