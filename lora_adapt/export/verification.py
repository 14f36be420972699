"""Compare two models on the same prompts: max |logit difference|, mean KL of the next-token (or
class) distributions, and greedy (argmax) agreement, position by position under teacher forcing.

Logits are always compared in fp32 on the CPU, whatever dtype and device produced them, and KL is
summed in fp64 so that the tiny values of a correct fp32 merge are not lost in rounding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

MAX_TOKENS = 64  # positions per prompt: enough to see a merge error, cheap on a CPU


@torch.inference_mode()
def collect_logits(
    model: Any, tokenizer: Any, texts: Sequence[str], *, max_tokens: int = MAX_TOKENS
) -> list[torch.Tensor]:
    """One ``[positions, classes]`` fp32 CPU tensor per prompt (vocabulary logits for a causal LM)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for text in texts:
        batch = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_tokens)
        batch = {
            k: v.to(device)
            for k, v in batch.items()
            if k in ("input_ids", "attention_mask", "token_type_ids")
        }
        logits = model(**batch).logits.float().cpu()
        out.append(logits.reshape(-1, logits.shape[-1]))
    return out


def compare_logits(reference: Sequence[torch.Tensor], candidate: Sequence[torch.Tensor]) -> dict[str, Any]:
    """How far ``candidate`` is from ``reference``: max |logit diff|, mean KL(ref || cand), argmax agreement."""
    max_diff, kl_sum, agree, positions, finite = 0.0, 0.0, 0, 0, True
    for ref, cand in zip(reference, candidate, strict=True):
        if ref.shape[0] == 0:
            continue
        if not bool(torch.isfinite(cand).all()):
            finite = False
            continue
        max_diff = max(max_diff, float((ref - cand).abs().max()))
        log_p = torch.log_softmax(ref.double(), dim=-1)
        log_q = torch.log_softmax(cand.double(), dim=-1)
        kl_sum += float((log_p.exp() * (log_p - log_q)).sum(-1).clamp_min(0).sum())
        agree += int((ref.argmax(-1) == cand.argmax(-1)).sum())
        positions += ref.shape[0]
    if not finite:
        return {
            "max_logit_diff": None,
            "mean_kl": None,
            "greedy_agreement": None,
            "positions": positions,
            "finite": False,
        }
    return {
        "max_logit_diff": max_diff,
        "mean_kl": kl_sum / max(positions, 1),
        "greedy_agreement": agree / max(positions, 1),
        "positions": positions,
        "finite": True,
    }


def format_comparison(numbers: dict[str, Any]) -> str:
    if not numbers.get("finite", True):
        return "non-finite logits (NaN/inf)"
    return (
        f"max |logit diff| {numbers['max_logit_diff']:.3g}, mean KL {numbers['mean_kl']:.3g}, "
        f"greedy agreement {100 * numbers['greedy_agreement']:.1f}% over {numbers['positions']} positions"
    )
