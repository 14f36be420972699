"""Bytes autograd keeps for the backward pass, per token, tensor by tensor.

This is the per-layer formula of PERFORMANCE.md (`T * b * (8h + 2h_kv + 4f)` for a Llama block with
SDPA; Korthikanti et al. 2022) written out so that each saved tensor gets its own dtype and its own
condition: frozen linears keep no input, a LoRA target keeps its own (dropped-out, cast) input copy,
RMSNorm keeps an fp32 copy of its input, the first block of a LoRA model keeps nothing for the
frozen embedding, checkpointing keeps one hidden state per block plus one recomputed block.

Checked against `torch.autograd.graph.saved_tensors_hooks` in tests/test_planner.py."""

from __future__ import annotations

from dataclasses import dataclass

from .settings import DTYPE_BYTES, Settings
from .skeleton import LinearSlot, Skeleton

LOSS_TILE_ELEMENTS = 4 * 2**20  # training.chunked_loss.TILE_ELEMENTS: one fp32 [chunk, vocab] tile
LOSS_MIN_CHUNK = 16  # training.chunked_loss.MIN_CHUNK
TRL_TOKEN_TILE = 4096  # trl.kernels.chunked_logprob.TOKEN_CHUNK_SIZE
TRL_VOCAB_TILE = 32768  # trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE
# Measured here (CPU, fp32, 1024 tokens x 32000 vocabulary, peak RSS over forward + backward):
CPU_TILE_BYTES = 34  # TRL's torch fallback (no Triton) holds ~8.4 fp32 tile-sized buffers at its peak
LOGITS_GRAD_BYTES = 6.5  # full-logits loss: gradient buffers per token x vocab beyond logits + fp32 log-probs


@dataclass(frozen=True)
class Widths:
    """Bytes per element of each kind of saved tensor, for one job."""

    res: int  # residual stream (embedding output dtype)
    compute: int  # matmul inputs/outputs (autocast dtype, else the weights' dtype)
    lora_in: int  # what lora_A saves as its input
    lora_cast: int  # dtype peft casts a target's input to (the adapter weights' dtype)
    mask: int  # dropout mask element (bool on CUDA; the input's dtype on CPU)


def widths(st: Settings) -> Widths:
    res = 4 if st.upcast_unquantized and st.quantized else DTYPE_BYTES[st.param_dtype]
    compute = DTYPE_BYTES[st.compute_dtype]
    lora_cast = DTYPE_BYTES[st.adapter_dtype]
    lora_in = compute if st.autocast else lora_cast
    return Widths(res, compute, lora_in, lora_cast, 1 if st.device == "cuda" else lora_cast)


@dataclass(frozen=True)
class ActivationBytes:
    """Bytes saved for backward at the end of the forward pass, and the transients around it."""

    saved: int  # everything autograd holds when the forward ends (without logits/loss)
    recompute: int  # one block recomputed during backward (gradient checkpointing only)
    logits: int  # saved for the loss backward (fp32 log-probabilities of the full-logits path)
    loss_transient: int  # held or allocated around the loss: the logits themselves, their gradients, tiles


def activation_bytes(sk: Skeleton, st: Settings) -> ActivationBytes:
    t = st.tokens
    w = widths(st)
    first_grad = (
        st.mode == "full" or st.gradient_checkpointing
    )  # enable_input_require_grads under checkpointing
    if st.gradient_checkpointing:
        layers: float = sk.num_layers * sk.hidden * w.res
        recompute = block_bytes(sk, st, w, grad_in=True)
    else:
        layers = block_bytes(sk, st, w, first_grad) + (sk.num_layers - 1) * block_bytes(sk, st, w, True)
        recompute = 0
    logits, transient = _loss_bytes(sk, st, w)
    return ActivationBytes(
        saved=int(t * (layers + _ends(sk, st, w))),
        recompute=int(t * recompute),
        logits=int(logits),
        loss_transient=int(transient),
    )


def block_bytes(sk: Skeleton, st: Settings, w: Widths, grad_in: bool) -> float:
    """Bytes saved per token by one repeated block; `grad_in`: its input requires grad."""
    full = st.mode == "full"
    slots = {
        role: [s for s in sk.block if s.role == role] for role in ("attn_in", "attn_out", "mlp_in", "mlp_out")
    }
    grad_attn = grad_in or full or any(_lora(s, st) for s in slots["attn_in"] + slots["attn_out"])
    total = _norm(sk, full, w, grad_in) + _linear_inputs(slots["attn_in"], st, w, w.res, grad_in, False)
    total += _attention_core(sk, st, w)
    total += _linear_inputs(slots["attn_out"], st, w, w.compute, grad_attn, True)
    total += _hidden_dropout(sk, st, w, grad_attn)
    total += _norm(sk, full, w, grad_attn) + _linear_inputs(slots["mlp_in"], st, w, w.res, grad_attn, False)
    total += _mlp_core(sk, w)
    total += _linear_inputs(slots["mlp_out"], st, w, w.compute, True, False)
    total += _hidden_dropout(sk, st, w, True)
    return total + _dora_extra(sk.block, st, w)


def _lora(slot: LinearSlot, st: Settings) -> bool:
    return st.adapter and slot.target


def _norm(sk: Skeleton, full: bool, w: Widths, grad_in: bool) -> float:
    """RMSNorm keeps its input upcast to fp32 and, when its weight trains, the normalised value;
    LayerNorm's fused kernel keeps its input (and per-token mean/rstd)."""
    if sk.rms_norm:
        return sk.hidden * ((4 if grad_in else 0) + (w.res if full else 0))
    return sk.hidden * w.res + 8 if grad_in or full else 0


def _linear_inputs(
    slots: list[LinearSlot], st: Settings, w: Widths, x_bytes: int, grad_x: bool, already_saved: bool
) -> float:
    """What the linears reading one tensor `x` keep: a trainable weight needs `x` (a cast copy under
    autocast); a LoRA target keeps its own copy when dropout or a dtype cast makes one, plus the
    rank-r intermediate; a frozen, unwrapped linear keeps nothing."""
    total, shared = 0.0, False
    for s in slots:
        if _lora(s, st):
            own = st.lora_dropout > 0 or w.lora_cast != x_bytes or (st.autocast and w.lora_cast != w.compute)
            total += s.d_in * w.lora_in if own else 0
            total += s.d_in * w.mask if own and st.lora_dropout > 0 and grad_x else 0
            total += st.rank * (w.compute if st.autocast else w.lora_cast)
            shared = shared or not own
        elif st.mode == "full":
            cast = st.autocast and x_bytes != w.compute
            total += s.d_in * w.compute if cast else 0
            shared = shared or not cast
    d_in = slots[0].d_in if slots else 0
    return total + (d_in * x_bytes if shared and not already_saved else 0)


def _attention_core(sk: Skeleton, st: Settings, w: Widths) -> float:
    """q, k, v (after RoPE) and the output are kept by the attention kernel. With a padding mask, SDPA
    gets k/v repeated to all heads; eager attention (and CPU SDPA with dropout, which falls back to
    the math kernel) also keeps the `heads x seq` probabilities per token."""
    repeat = st.padded and st.attention != "flash_attention_2" and sk.kv_heads < sk.heads
    kv = sk.q_dim if repeat or st.attention == "eager" else sk.kv_dim
    total = (sk.q_dim + 2 * kv + sk.q_dim) * w.compute + sk.heads * 4
    total += st.seq_len if st.padded and st.attention != "flash_attention_2" else 0  # boolean mask row
    math_kernel = st.attention == "eager" or (st.device == "cpu" and sk.attn_dropout > 0)
    if math_kernel:
        per_prob = 4 + w.compute + ((w.compute + w.mask) if sk.attn_dropout > 0 else 0)
        total += sk.heads * st.seq_len * per_prob + (sk.q_dim * w.compute if st.attention == "eager" else 0)
    return total


def _mlp_core(sk: Skeleton, w: Widths) -> float:
    """Gated MLP: gate output (for the activation), activation and up outputs (for their product).
    Plain MLP: the first projection's output (for the activation)."""
    return (3 if sk.gated_mlp else 1) * sk.intermediate * w.compute


def _hidden_dropout(sk: Skeleton, st: Settings, w: Widths, grad_x: bool) -> float:
    return sk.hidden * w.mask if sk.hidden_dropout > 0 and grad_x else 0


def _dora_extra(block: tuple[LinearSlot, ...], st: Settings, w: Widths) -> float:
    """DoRA keeps the base and LoRA outputs of each target for its magnitude rescaling."""
    if not st.adapter or st.adapter_method != "dora":
        return 0
    return sum(2 * s.d_out * w.lora_cast for s in block if s.target)


def _ends(sk: Skeleton, st: Settings, w: Widths) -> float:
    """Per token, outside the blocks: token ids (trainable embedding), the final norm, the hidden
    state the LM head or classifier reads."""
    full = st.mode == "full"
    total = 8.0 if full else 0.0
    if st.head == "causal_lm" and sk.rms_norm:
        total += _norm(sk, full, w, True)
    if st.head == "causal_lm" and st.loss_path == "trl":  # TRL's head saves the hidden states and targets
        total += sk.hidden * w.res + 8
    elif st.head == "causal_lm" and st.loss_path == "logits":  # a trained head keeps its input
        total += sk.hidden * w.compute if full else 0
    elif st.head == "token_classification":
        total += sk.hidden * w.compute
    return total


def _loss_bytes(sk: Skeleton, st: Settings, w: Widths) -> tuple[float, float]:
    """(held from forward to backward, transient at the start of backward) for the LM loss, by loss path.

    - `logits` (a hand-written loop, the model's own loss): fp32 log-probabilities are saved and the logits
      (compute dtype) stay referenced by the model output; the backward materialises two fp32 `[tokens,
      vocab]` gradients.
    - `chunked` (lora-adapt's, training/chunked_loss.py) and `liger`: one chunk of logits at a time with
      the gradients formed in forward; held: the fp32 gradient of the hidden states (and of the head
      weight when it trains); transient: two fp32 `[chunk, vocab]` tiles and the gathered hidden states.
    - `trl` (TRL's fused head): `[4096, 32768]` tiles; its Triton kernels fold each tile in place on a GPU,
      its torch fallback elsewhere keeps several tile-sized temporaries, more than full logits for
      short batches. It accumulates fp32 gradients for the hidden states (and the head weight)."""
    t, v = st.tokens, sk.vocab
    if st.head != "causal_lm" or st.loss_path == "head":
        return t * st.num_labels * 12, 0
    if st.loss_path == "logits":
        return t * v * 4, t * v * (w.compute + LOGITS_GRAD_BYTES)
    head_grad = sk.output_head_numel * 4 if st.mode == "full" else 0
    if st.loss_path in ("chunked", "liger"):
        chunk = min(t, max(LOSS_MIN_CHUNK, LOSS_TILE_ELEMENTS // v))
        cast = sk.output_head_numel * w.compute if st.autocast and w.compute != w.res else 0
        return t * sk.hidden * 4 + head_grad, 2 * chunk * v * 4 + t * sk.hidden * w.res + cast
    tile = min(t, TRL_TOKEN_TILE) * min(v, TRL_VOCAB_TILE)
    per_tile = (
        CPU_TILE_BYTES if st.device == "cpu" else w.compute + 4
    )  # GPU: the matmul tile + fp32 working set
    return 0, tile * per_tile + t * sk.hidden * 4 + head_grad
