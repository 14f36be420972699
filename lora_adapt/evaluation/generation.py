"""Generative evaluation: batched greedy generation, and label scoring by log-likelihood.

Prompts are tokenized as in training (``add_special_tokens=True``, the prompt text exactly as the
data module's ``generative_prompt`` wrote it), left-padded for generation. ``generate_ids`` is the one
generation loop: evaluation, ``predict`` and the server (mixed-adapter batches, streaming) all use it.

Two ways to read a label from a causal LM:
- ``generate_answers``: what the model says (greedy). The answer is parsed strictly; unreadable
  answers are counted as invalid (see parsing.py).
- ``rank_choices``: the "constrained" reading: the label whose completion (``" " + label`` + EOS)
  has the highest total log-probability given the prompt. It always returns a label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .prediction import model_device


@dataclass
class Generated:
    """One row's new tokens (EOS and anything after it removed) and why generation ended."""

    token_ids: list[int]
    finish_reason: (
        str  # "stop": an end token (or a stop string, set by the caller); "length": the budget ran out
    )


def end_token_ids(model, tokenizer) -> set[int]:
    """Tokens that end an answer: the tokenizer's EOS and the model's generation-config EOS ids (chat
    models often end a turn with a token of their own, e.g. ``<|im_end|>`` or ``<|eot_id|>``)."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update([configured] if isinstance(configured, int) else list(configured or []))
    return ids


@torch.no_grad()
def generate_ids(
    model,
    prompts: Sequence[Sequence[int]],
    *,
    pad_token_id: int,
    end_ids: set[int],
    max_new_tokens: int | Sequence[int],
    sampling: dict[str, Any] | None = None,
    adapter_names: Sequence[str] | None = None,
    streamer: Any = None,
) -> list[Generated]:
    """Continue each tokenized prompt (left-padded into one batch) until an end token or its budget.

    ``max_new_tokens``: one budget, or one per row (the batch runs to the largest; each row is cut to its
    own, which for greedy decoding is exactly what a run with that budget gives). ``sampling``: keyword
    arguments of ``generate`` that turn sampling on (``{"do_sample": True, "temperature": ...}``); greedy
    when None. ``adapter_names``: one PEFT adapter per row (``"__base__"`` = no adapter), for a batch that
    mixes adapters. ``streamer``: a transformers ``BaseStreamer`` that receives each step's tokens."""
    model.eval()
    budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    width = max(len(p) for p in prompts)
    device = model_device(model)
    input_ids = torch.tensor([[pad_token_id] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    extra: dict[str, Any] = dict(sampling or {"do_sample": False, "num_beams": 1})
    if adapter_names is not None:
        extra["adapter_names"] = list(adapter_names)
    out = model.generate(
        input_ids=input_ids,
        attention_mask=mask,
        max_new_tokens=max(budgets),
        pad_token_id=pad_token_id,
        eos_token_id=sorted(end_ids) or None,
        streamer=streamer,
        **extra,
    )
    return [_cut(row.tolist(), end_ids, budget) for row, budget in zip(out[:, width:], budgets, strict=True)]


def _cut(tokens: list[int], end_ids: set[int], budget: int) -> Generated:
    for i, token in enumerate(tokens[:budget]):
        if token in end_ids:
            return Generated(tokens[:i], "stop")
    return Generated(tokens[:budget], "length")


def generate_answers(
    model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int, batch_size: int
) -> list[str]:
    """Greedy continuations of ``prompts`` (special tokens removed), in order."""
    answers: list[str] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ends = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for start in range(0, len(prompts), batch_size):
        ids = tokenizer(list(prompts[start : start + batch_size]), add_special_tokens=True)["input_ids"]
        out = generate_ids(model, ids, pad_token_id=pad, end_ids=ends, max_new_tokens=max_new_tokens)
        answers.extend(tokenizer.batch_decode([g.token_ids for g in out], skip_special_tokens=True))
    return answers


def answer_budget(tokenizer, choices: Sequence[str], max_new_tokens: int, slack: int = 4) -> int:
    """New tokens needed to write the longest choice (and stop), capped by ``max_new_tokens``."""
    longest = max(
        (len(tokenizer(" " + c, add_special_tokens=False)["input_ids"]) for c in choices), default=0
    )
    return max(1, min(max_new_tokens, longest + slack))


@torch.no_grad()
def rank_choices(
    model, tokenizer, prompts: Sequence[str], choices: Sequence[str], *, batch_size: int
) -> list[str]:
    """For each prompt, the choice with the highest log P(" " + choice + EOS | prompt)."""
    model.eval()
    best: list[str] = []
    for prompt in prompts:
        scores: list[float] = []
        for start in range(0, len(choices), batch_size):
            scores += _completion_logprobs(model, tokenizer, prompt, choices[start : start + batch_size])
        best.append(choices[max(range(len(choices)), key=scores.__getitem__)])
    return best


def _completion_logprobs(model, tokenizer, prompt: str, choices: Sequence[str]) -> list[float]:
    """Summed log-probabilities of each completion's tokens (EOS included) after ``prompt``."""
    seqs, starts = [], []
    for choice in choices:
        ids, start = _joint_ids(tokenizer, prompt, " " + choice)
        seqs.append(ids + [tokenizer.eos_token_id])
        starts.append(start)
    width = max(len(s) for s in seqs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = model_device(model)
    batch = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=device)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
    logprobs = torch.log_softmax(model(input_ids=batch, attention_mask=mask).logits.float(), dim=-1)
    out = []
    for row, (seq, start) in enumerate(zip(seqs, starts, strict=True)):
        positions = torch.arange(start, len(seq), device=device)
        targets = batch[row, start : len(seq)]
        out.append(float(logprobs[row, positions - 1, targets].sum()))
    return out


def _joint_ids(tokenizer, prompt: str, completion: str) -> tuple[list[int], int]:
    """Token ids of prompt + completion tokenized together, and the index of the first completion token."""
    text = prompt + completion
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        start = next((i for i, (s, e) in enumerate(offsets) if e > len(prompt) and e > s), len(offsets))
        return list(enc["input_ids"]), max(start, 1)
    head = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    tail = tokenizer(completion, add_special_tokens=False)["input_ids"]
    return head + tail, max(len(head), 1)
