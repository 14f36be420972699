"""Memory per GPU when N GPUs share one job: which terms a strategy splits across them, which it moves to
CPU RAM, and what sharding adds.

- DDP: every GPU holds the whole job, plus its gradient buckets (one more copy of the trainable gradients,
  which DDP all-reduces).
- FSDP `full_shard` / ZeRO-3: parameters, gradients and optimizer state are divided by N (rounded up);
  each layer's parameters are all-gathered for its forward and backward (the current layer and the one
  prefetched next), and the output head stays gathered around the loss. FSDP `shard_grad_op` keeps the
  parameters gathered from forward to backward, so they count whole. ZeRO-1 splits the optimizer state,
  ZeRO-2 also the gradients.
- Offloading (FSDP `cpu_offload`, DeepSpeed `offload_*`) moves those terms to CPU RAM: none on the GPU.
- Not divided: activations, logits and loss, autocast copies, and bitsandbytes' quantization constants
  (kept in each weight's `quant_state`, outside the tensors FSDP shards).
"""

from __future__ import annotations

import math
from typing import Any

GROUPS: dict[str, tuple[str, ...]] = {
    "params": ("weights", "quantized_weights", "adapter"),
    "grads": ("gradients",),
    "optimizer": ("optimizer_states", "optimizer_step"),
}
ALL_GROUPS = tuple(GROUPS)
PREFETCHED_LAYERS = 2  # the layer computing and the next one being gathered


def parallel_fields(distributed: Any, strategy: str, num_gpus: int) -> dict[str, Any]:
    """The Settings fields of ``num_gpus`` GPUs under ``strategy`` with the recipe's ``distributed`` options."""
    if num_gpus <= 1:
        return {"num_gpus": 1, "strategy": "single", "shard": (), "offload": (), "sharded_model": False}
    shard: tuple[str, ...] = ()
    offload: tuple[str, ...] = ()
    if strategy == "fsdp":
        fsdp = distributed.fsdp
        shard = ALL_GROUPS if fsdp.sharding == "full_shard" else ("grads", "optimizer")
        offload = ALL_GROUPS if fsdp.cpu_offload else ()
    elif strategy == "deepspeed":
        ds = distributed.deepspeed
        shard = ("optimizer", "grads", "params")[: ds.stage]
        offload = ("optimizer",) * ds.offload_optimizer + ("params",) * ds.offload_parameters
    sharded_model = strategy == "fsdp" or (strategy == "deepspeed" and distributed.deepspeed.stage == 3)
    return {
        "num_gpus": num_gpus,
        "strategy": strategy,
        "shard": shard,
        "offload": offload,
        "sharded_model": sharded_model,
    }


def per_gpu(terms: dict[str, int], st: Any, layer_bytes: int, head_bytes: int) -> dict[str, int]:
    """``terms`` (one GPU holding the whole job) as each of ``st.num_gpus`` GPUs holds them."""
    if st.num_gpus <= 1:
        return terms
    out = dict(terms)
    for group, keys in GROUPS.items():
        for key in keys:
            if group in st.offload:
                out[key] = 0
            elif group in st.shard:
                out[key] = math.ceil(terms[key] / st.num_gpus)
    if "params" in st.shard:
        out["gathered_layers"] = PREFETCHED_LAYERS * layer_bytes + head_bytes
    if st.strategy == "ddp":
        out["ddp_buckets"] = terms["gradients"]
    return out


def sharding_note(st: Any) -> str:
    """What the per-GPU figures assume, in one line."""
    if st.strategy == "ddp":
        return (
            f"per GPU, {st.num_gpus} GPUs with DDP: each holds the whole job (every term) plus its gradient "
            "buckets; more GPUs add throughput, not memory"
        )
    split = (
        ", ".join(GROUP_NAMES[g] for g in ALL_GROUPS if g in st.shard and g not in st.offload) or "nothing"
    )
    moved = ", ".join(GROUP_NAMES[g] for g in ALL_GROUPS if g in st.offload)
    return (
        f"per GPU, {st.num_gpus} GPUs with {st.strategy}: {split} divided by {st.num_gpus}"
        + (f"; {moved} in CPU RAM" if moved else "")
        + "; activations, logits and quantization constants are not divided"
        + (
            "; each layer's parameters are gathered in turn (2 layers and the head)"
            if "params" in st.shard
            else ""
        )
    )


GROUP_NAMES = {"params": "parameters", "grads": "gradients", "optimizer": "optimizer state"}
