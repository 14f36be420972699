"""The memory estimate of one job, term by term, and its peak.

Static terms are counted tensor by tensor on the meta skeleton: weights by dtype, bitsandbytes'
packed 4-bit/8-bit weights and their quantization constants exactly as bitsandbytes lays them out,
adapter weights, gradients and optimizer states of the trainable tensors. Dynamic terms come from
`activations`. The peak is the largest of four moments of a training step (see `phases`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .activations import activation_bytes
from .settings import DTYPE_BYTES, Settings
from .sharding import per_gpu
from .skeleton import Skeleton, Tensor

NF4_BLOCK = 64  # bitsandbytes 4-bit blocksize
NESTED_BLOCK = 256  # double quantization: absmax values per nested block
NF4_CODE_BYTES = 16 * 4  # the 16-value fp32 code table kept per tensor
NESTED_CODE_BYTES = 256 * 4  # the 8-bit dynamic code table of the nested quantization
OPT8_BLOCK = 256  # bitsandbytes 8-bit optimizer: one fp32 absmax per 256 state values
OPT8_MIN_SIZE = 4096  # smaller tensors keep fp32 states (bitsandbytes min_8bit_size)
CUDA_CONTEXT_BYTES = 512 * 2**20  # CUDA context + cuBLAS workspace, outside torch's allocator
ALLOCATOR_SLACK = 0.10  # caching-allocator reserve over the allocated peak (fragmentation)
CPU_PROCESS_BYTES = (
    560 * 2**20
)  # python + torch + transformers + trl + datasets resident (llama-tiny bench runs here)

EIGHT_BIT = ("adamw_8bit", "paged_adamw_8bit")


@dataclass(frozen=True)
class Estimate:
    """Bytes per term, the moment of the step where memory peaks, and the peak."""

    terms: dict[str, int]
    phases: dict[str, int]
    overhead: dict[str, int]
    trainable_params: int
    total_params: int

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=lambda k: self.phases[k])

    @property
    def peak(self) -> int:
        return max(self.phases.values()) + sum(self.overhead.values())


def estimate(sk: Skeleton, st: Settings) -> Estimate:
    trainable = _trainable(sk, st)
    terms = {
        "weights": _weights(sk, st),
        "quantized_weights": _quantized(sk, st),
        "quant_constants": sum(quant_constant_bytes(t, st) for t in sk.tensors if _is_quantized(t, st)),
        "adapter": sum(t.numel * _dtype_bytes(t, st) for t in sk.tensors if t.is_adapter)
        if st.adapter
        else 0,
        "gradients": sum(t.numel * _dtype_bytes(t, st) for t in trainable),
        "optimizer_states": sum(
            optimizer_state_bytes(t, _dtype_bytes(t, st), st.optimizer) for t in trainable
        ),
        "autocast_copies": _autocast_copies(sk, st),
    }
    act = activation_bytes(sk, st)
    terms |= {
        "activations": act.saved,
        "checkpoint_recompute": act.recompute,
        "logits_loss": act.logits + act.loss_transient,
        "optimizer_step": _step_temporaries(trainable, st),
    }
    terms = per_gpu(terms, st, layer_bytes(sk, st), sk.output_head_numel * DTYPE_BYTES[st.param_dtype])
    phases = _phases(terms, st)
    return Estimate(
        terms,
        phases,
        _overhead(max(phases.values()), st),
        sum(t.numel for t in trainable),
        sum(t.numel for t in sk.tensors),
    )


def _phases(terms: dict[str, int], st: Settings) -> dict[str, int]:
    """Four moments of a step: the loss backward starts (all activations, the logits and their
    gradients), a checkpointed block is recomputed, the backward ends (all gradients), the optimizer
    steps (gradients + its temporaries). Gradients survive between micro-batches only when
    accumulating."""
    static = sum(
        terms.get(k, 0)
        for k in (
            "weights",
            "quantized_weights",
            "quant_constants",
            "adapter",
            "optimizer_states",
            "ddp_buckets",
        )
    )
    held_grads = terms["gradients"] if st.grad_accum > 1 else 0
    gathered = terms.get("gathered_layers", 0)  # sharded parameters all-gathered during forward and backward
    forward = static + terms["autocast_copies"] + terms["activations"] + held_grads + gathered
    return {
        "loss": forward + terms["logits_loss"],
        "recompute": forward + terms["checkpoint_recompute"],
        "grads": static + terms["gradients"] + gathered,
        "step": static + terms["gradients"] + terms["optimizer_step"],
    }


def _overhead(allocated: int, st: Settings) -> dict[str, int]:
    if st.device == "cuda":
        return {"allocator_slack": int(allocated * ALLOCATOR_SLACK), "cuda_context": CUDA_CONTEXT_BYTES}
    return {"process": CPU_PROCESS_BYTES}


def layer_bytes(sk: Skeleton, st: Settings) -> int:
    """Bytes of one repeated block's parameters as stored (what FSDP all-gathers for that layer)."""
    block = [t for t in sk.tensors if sk.block_prefix and t.name.startswith(sk.block_prefix)]
    return _quantized_bytes(block, st) + sum(
        t.numel * _dtype_bytes(t, st) for t in block if not _is_quantized(t, st)
    )


def _is_quantized(t: Tensor, st: Settings) -> bool:
    return t.quantized and st.quantized


def _dtype_bytes(t: Tensor, st: Settings) -> int:
    """Bytes per element of an unquantized tensor as trained."""
    if st.adapter and t.is_adapter and "lora_magnitude" in t.name:
        return 4  # DoRA magnitudes stay fp32 (TRL leaves them out of its bf16 cast)
    if st.adapter and t.is_adapter and ".lora_" in f".{t.name}":
        return DTYPE_BYTES[st.adapter_dtype]
    if st.upcast_unquantized and st.quantized:
        return 4
    return DTYPE_BYTES[st.param_dtype]


def _trainable(sk: Skeleton, st: Settings) -> list[Tensor]:
    if st.mode == "full":
        return [t for t in sk.tensors if not t.is_adapter]
    return [t for t in sk.tensors if t.trainable]


def _weights(sk: Skeleton, st: Settings) -> int:
    return sum(
        t.numel * _dtype_bytes(t, st) for t in sk.tensors if not t.is_adapter and not _is_quantized(t, st)
    )


def _quantized(sk: Skeleton, st: Settings) -> int:
    return _quantized_bytes(sk.tensors, st)


def _quantized_bytes(tensors, st: Settings) -> int:
    per = {"nf4": 0.5, "fp4": 0.5, "int8": 1.0}.get(st.quantization, 0)
    return sum(math.ceil(t.numel * per) for t in tensors if _is_quantized(t, st))


def quant_constant_bytes(t: Tensor, st: Settings) -> int:
    """bitsandbytes' per-tensor quantization state. 4-bit: one absmax per 64 values (fp32, or uint8 plus
    one fp32 per 256 blocks and a 256-entry code when double-quantized) and the 16-entry code table.
    int8 (LLM.int8): one fp32 scale per output row."""
    if st.quantization == "int8":
        return 4 * t.rows
    blocks = math.ceil(t.numel / NF4_BLOCK)
    if not st.double_quant:
        return 4 * blocks + NF4_CODE_BYTES
    return blocks + 4 * math.ceil(blocks / NESTED_BLOCK) + NESTED_CODE_BYTES + NF4_CODE_BYTES + 4


def optimizer_state_bytes(t: Tensor, param_bytes: int, optimizer: str) -> int:
    """State bytes one optimizer keeps for one trainable tensor."""
    n = t.numel
    if optimizer == "adamw_torch":
        return 2 * n * param_bytes  # torch keeps exp_avg / exp_avg_sq in the parameter's dtype
    if optimizer == "paged_adamw_32bit":
        return 2 * n * 4
    if optimizer in EIGHT_BIT or optimizer == "lion_8bit":
        states = 1 if optimizer == "lion_8bit" else 2
        return states * (n + 4 * math.ceil(n / OPT8_BLOCK)) if n >= OPT8_MIN_SIZE else states * 4 * n
    if optimizer == "adafactor":
        return 4 * (t.rows + n // max(t.rows, 1)) if n != t.rows else 4 * n  # factored second moment
    return 0  # sgd without momentum


def _step_temporaries(trainable: list[Tensor], st: Settings) -> int:
    """torch's multi-tensor (foreach) AdamW, the CUDA default, allocates one state-sized buffer for the
    whole group (sqrt of exp_avg_sq); the per-tensor kernels elsewhere need one tensor at a time."""
    sizes = [
        t.numel * (4 if st.optimizer != "adamw_torch" else DTYPE_BYTES[st.param_dtype]) for t in trainable
    ]
    if not sizes or st.optimizer == "sgd":
        return 0
    foreach = st.device == "cuda" and st.optimizer == "adamw_torch"
    return sum(sizes) if foreach else max(sizes)


def _autocast_copies(sk: Skeleton, st: Settings) -> int:
    """Under autocast, every linear weight stored in another dtype is cast for its matmul, and the cast
    copy is kept for the backward (cached for trainable weights). Quantized weights are dequantized
    on the fly and not kept."""
    if not st.autocast or DTYPE_BYTES[st.compute_dtype] == _base_bytes(st):
        return 0
    linear = sum(t.numel for t in sk.tensors if t.quantized and not _is_quantized(t, st) and not t.is_adapter)
    head = sk.output_head_numel if st.head != "causal_lm" or st.loss_path == "logits" else 0
    return (linear + head) * DTYPE_BYTES[st.compute_dtype]


def _base_bytes(st: Settings) -> int:
    return 4 if st.upcast_unquantized and st.quantized else DTYPE_BYTES[st.param_dtype]
