"""Generative evaluation: batched greedy generation, and label scoring by log-likelihood.

Prompts are tokenized as in training (``add_special_tokens=True``, the prompt text exactly as the
data module's ``generative_prompt`` wrote it), left-padded for generation.

Two ways to read a label from a causal LM:
- ``generate_answers``: what the model says (greedy). The answer is parsed strictly; unreadable
  answers are counted as invalid (see parsing.py).
- ``rank_choices``: the "constrained" reading: the label whose completion (``" " + label`` + EOS)
  has the highest total log-probability given the prompt. It always returns a label.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from .prediction import model_device


@contextmanager
def left_padding(tokenizer) -> Iterator[None]:
    """Pad on the left while generating (restored afterwards: the tokenizer is shared)."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        yield
    finally:
        tokenizer.padding_side = side


@torch.no_grad()
def generate_answers(
    model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int, batch_size: int
) -> list[str]:
    """Greedy continuations of ``prompts`` (special tokens removed), in order."""
    model.eval()
    device = model_device(model)
    answers: list[str] = []
    with left_padding(tokenizer):
        for start in range(0, len(prompts), batch_size):
            enc = tokenizer(
                list(prompts[start : start + batch_size]),
                return_tensors="pt",
                padding=True,
                add_special_tokens=True,
            ).to(device)
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            new = out[:, enc["input_ids"].shape[1] :]
            answers.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
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
