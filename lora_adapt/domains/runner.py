"""One forward for a batch of prepared inputs whatever adapters they use: classifier heads in one padded
forward, generation in one ``generate`` (``evaluation.generation.generate_ids``, the loop `eval` uses)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..recipe.serving import GenerationSpec

if TYPE_CHECKING:
    from .adapter_set import AdapterSet, Prepared


@torch.no_grad()
def classify(aset: AdapterSet, batch: Sequence[Prepared], top_k: int) -> list[dict[str, Any]]:
    """Head rows: pad, one forward, each row's logits cut to its adapter's own labels and decoded."""
    model = aset.model
    inputs = _head_inputs(aset, batch)
    with aset.routed([p.name for p in batch]) as extra:
        logits = model(**inputs, **extra).logits.float().cpu().numpy()
    out = []
    for row_logits, p in zip(logits, batch, strict=True):
        member = aset[p.name]
        own = row_logits[..., : member.width]
        decoded = member.kind.decode(own, p.row, p.extra, top_k)  # type: ignore[attr-defined]
        # read as trained: the first data.max_seq_length tokens; the answer says when that cut the input
        truncated = {"truncated": True, "input_tokens": p.input_tokens} if p.truncated else {}
        out.append({"adapter": p.name, **decoded, "prompt_tokens": len(p.ids), **truncated})
    return out


@torch.no_grad()
def base_features(aset: AdapterSet, batch: Sequence[Prepared]) -> np.ndarray:
    """[rows, width]: the base model's last hidden states with every adapter off, mean-pooled over each
    row's tokens: the features of the evaluation's frozen-encoder probe (``prediction.frozen_features``),
    which a ``frozen_probe`` router classifies."""
    from ..evaluation.prediction import mean_pooled
    from .adapter_set import BASE

    inputs = _head_inputs(aset, batch)
    with aset.routed([BASE]):
        hidden = aset.model(**inputs, output_hidden_states=True).hidden_states[-1].float()
    return mean_pooled(hidden, inputs["attention_mask"]).cpu().numpy()


def _head_inputs(aset: AdapterSet, batch: Sequence[Prepared]) -> dict[str, torch.Tensor]:
    """Head rows padded on the right into one batch on the model's device."""
    from ..evaluation.prediction import model_device, pad_right

    segments = all("token_type_ids" in p.extra for p in batch)  # BERT-style segment ids (sentence pairs)
    features = [
        {
            "input_ids": p.ids,
            "attention_mask": p.extra["attention_mask"],
            **({"token_type_ids": p.extra["token_type_ids"]} if segments else {}),
        }
        for p in batch
    ]
    device = model_device(aset.model)
    return {k: v.to(device) for k, v in pad_right(aset.tokenizer, features).items()}


def sampling_arguments(generation: GenerationSpec) -> dict[str, Any] | None:
    """``generate`` keywords for the settings (None = greedy, the default)."""
    if generation.greedy:
        if generation.repetition_penalty == 1.0:
            return None
        return {"do_sample": False, "num_beams": 1, "repetition_penalty": generation.repetition_penalty}
    return {
        "do_sample": True,
        "temperature": generation.temperature,
        "top_p": generation.top_p,
        "top_k": generation.top_k or None,
        "repetition_penalty": generation.repetition_penalty,
    }


def end_ids(aset: AdapterSet) -> set[int]:
    """Tokens that end an answer for any member: EOS of each tokenizer and of the model's generation config."""
    from ..evaluation.generation import end_token_ids

    ids = end_token_ids(aset.model if aset.model is not None else aset.loaded.model, aset.tokenizer)
    for member in aset.members.values():
        if member.tokenizer.eos_token_id is not None:
            ids.add(member.tokenizer.eos_token_id)
    return ids


def generate(
    aset: AdapterSet, batch: Sequence[Prepared], generation: GenerationSpec, streamer: Any = None
) -> list[dict[str, Any]]:
    """Generative rows: one left-padded ``generate`` (each row to its own budget), answers read per kind."""
    from ..evaluation.generation import generate_ids

    model = aset.model if aset.model is not None else aset.loaded.model
    pad = aset.tokenizer.pad_token_id
    if generation.seed is not None:
        torch.manual_seed(generation.seed)
    with aset.routed([p.name for p in batch]) as extra:
        outputs = generate_ids(
            model,
            [p.ids for p in batch],
            pad_token_id=pad if pad is not None else aset.tokenizer.eos_token_id,
            end_ids=end_ids(aset),
            max_new_tokens=[p.budget for p in batch],
            sampling=sampling_arguments(generation),
            adapter_names=extra.get("adapter_names"),
            streamer=streamer,
        )
    results = []
    for p, out in zip(batch, outputs, strict=True):
        member = aset[p.name]
        text = member.tokenizer.decode(out.token_ids, skip_special_tokens=True)
        text, stopped = cut_at_stop(text, p.stop or generation.stop)
        results.append(
            {
                "adapter": p.name,
                **member.kind.read(text, p.row),  # type: ignore[attr-defined]
                "text": text,
                "finish_reason": "stop" if stopped else out.finish_reason,
                "prompt_tokens": len(p.ids),
                "completion_tokens": len(out.token_ids),
            }
        )
    return results


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string (and whether one was found)."""
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)
