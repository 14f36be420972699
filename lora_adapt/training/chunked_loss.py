"""Cross-entropy over the LM head, one chunk of tokens at a time: the full `[tokens, vocab]` logits are
never held.

Each chunk of hidden states is projected through the head (one `[chunk, vocab]` fp32 tile), folded into
the loss, the entropy and the top-1 count, and turned in place into the gradient of the logits, which is
immediately contracted with the head weight into the gradient of the hidden states (and of the weight
when it trains). The backward pass then only scales these stored gradients by the incoming one: nothing
is recomputed, and the FLOPs are those of plain cross-entropy (one projection forward, one or two
gradient GEMMs). This is the method of Liger-Kernel's fused linear cross-entropy
(https://github.com/linkedin/Liger-Kernel), in plain torch, so it runs on any device.

The loss must be used linearly (summed, scaled, accumulated), which is what a training loss is.
Memory: two fp32 tiles of `chunk x vocab`, the fp32 gradient of the hidden states, and the fp32 gradient
of the head weight when it trains."""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE_INDEX = -100
TILE_ELEMENTS = 4 * 2**20  # elements of one fp32 [chunk, vocab] tile (16 MiB): chunk = TILE_ELEMENTS // vocab
MIN_CHUNK = 16


@dataclass(frozen=True)
class LossStats:
    """The loss (differentiable) and per-step logging sums (detached), from the same pass."""

    loss: torch.Tensor  # sum of token NLLs x scale
    tokens: torch.Tensor  # tokens scored (labels != -100)
    entropy_sum: torch.Tensor | None  # sum of the next-token distributions' entropies (None: not computed)
    correct: torch.Tensor  # tokens whose label is the most likely next token


def chunk_tokens(vocab: int, tile_elements: int = TILE_ELEMENTS) -> int:
    """Tokens per chunk so that one fp32 tile holds about `tile_elements` values."""
    return max(MIN_CHUNK, tile_elements // max(vocab, 1))


def chunked_lm_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    *,
    num_items: int | torch.Tensor | None = None,
    chunk: int | None = None,
) -> LossStats:
    """Causal-LM cross-entropy of `hidden [batch, seq, H]` (the decoder's output) against `labels [batch, seq]`,
    shifted by one as the model's own loss does; the sum over scored tokens divided by `num_items` (their
    count when not given)."""
    states, targets, count = scored_positions(hidden, labels)
    denominator = count.clamp(min=1) if num_items is None else torch.as_tensor(num_items)
    scale = 1.0 / float(denominator)
    loss, entropy_sum, correct = ChunkedLinearCrossEntropy.apply(
        states, weight, bias, targets, scale, chunk or chunk_tokens(weight.shape[0]), torch.is_grad_enabled()
    )
    return LossStats(loss, count, entropy_sum, correct)


def scored_positions(hidden: torch.Tensor, labels: torch.Tensor):
    """(hidden states `[n, H]`, their next-token targets `[n]`, n) of the positions whose label is scored."""
    shifted = labels[:, 1:].to(hidden.device)
    mask = shifted != IGNORE_INDEX
    return hidden[:, :-1][mask], shifted[mask], mask.sum()


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """`sum(cross_entropy(hidden @ weight.T + bias, targets)) * scale` with the gradients formed in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, scale: float, chunk: int, grads_wanted: bool):  # type: ignore[override]
        # `needs_input_grad` says which inputs require grad even under no_grad (evaluation): the caller
        # passes whether grad mode was on, so evaluation computes the loss alone
        want_h = grads_wanted and ctx.needs_input_grad[0]
        want_w = grads_wanted and ctx.needs_input_grad[1]
        want_b = grads_wanted and bias is not None and ctx.needs_input_grad[2]
        compute = _compute_dtype(hidden)
        w = weight.to(compute)
        n, vocab = hidden.shape[0], weight.shape[0]
        grad_h = torch.empty_like(hidden, dtype=torch.float32) if want_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
        grad_b = torch.zeros(vocab, dtype=torch.float32, device=weight.device) if want_b else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        entropy = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        rows = min(chunk, max(n, 1))
        z_buf = torch.empty((rows, vocab), dtype=torch.float32, device=hidden.device)
        e_buf = torch.empty_like(z_buf)
        for start in range(0, n, chunk):
            end = min(start + chunk, n)
            h = hidden[start:end].to(compute)
            z, e = z_buf[: end - start], e_buf[: end - start]
            if compute == torch.float32:
                torch.mm(h, w.t(), out=z)
            else:
                z.copy_(h @ w.t())
            if bias is not None:
                z.add_(bias.float())
            z.sub_(z.amax(dim=1, keepdim=True))  # logits minus their row maximum
            target = targets[start:end].unsqueeze(1)
            z_target = z.gather(1, target).squeeze(1)
            correct += (z_target >= 0).sum()
            torch.exp(z, out=e)
            sum_e = e.sum(dim=1)
            log_z = sum_e.log()
            total += (log_z - z_target).sum()
            # entropy = log Z - sum_j p_j z_j, the dot product row by row without a third tile
            entropy += (log_z - torch.bmm(e.unsqueeze(1), z.unsqueeze(2)).view(-1) / sum_e).sum()
            if not (want_h or want_w or want_b):
                continue
            e.div_(sum_e.unsqueeze(1))  # softmax
            e.scatter_add_(1, target, torch.full_like(z_target, -1.0).unsqueeze(1))
            e.mul_(scale)  # d(loss)/d(logits)
            g = e.to(compute)
            if grad_h is not None:
                grad_h[start:end] = g @ w
            if grad_w is not None:
                grad_w.addmm_(g.t().float(), h.float())
            if grad_b is not None:
                grad_b += e.sum(dim=0)
        ctx.save_for_backward(*(t if t is not None else torch.empty(0) for t in (grad_h, grad_w, grad_b)))
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.mark_non_differentiable(entropy, correct)
        return total * scale, entropy, correct

    @staticmethod
    def backward(ctx, grad_loss, _entropy, _correct):  # type: ignore[override]
        grad_h, grad_w, grad_b = ctx.saved_tensors
        h_dtype, w_dtype, b_dtype = ctx.dtypes

        def scaled(g, dtype, wanted):
            return (g * grad_loss).to(dtype) if wanted and g.numel() else None

        return (
            scaled(grad_h, h_dtype, ctx.needs_input_grad[0]),
            scaled(grad_w, w_dtype, ctx.needs_input_grad[1]),
            scaled(grad_b, b_dtype, ctx.needs_input_grad[2]),
            None,
            None,
            None,
            None,
        )


def _compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The matmul dtype: autocast's when it is on for this device (as `nn.Linear` would run), else the input's."""
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return hidden.dtype
