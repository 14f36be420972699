"""Packed sequences kept one packed row per batch row, for attention without variable-length kernels.

TRL's best-fit-decreasing packing fills rows of `max_length` tokens with whole documents, and its
padding-free collator then concatenates a micro-batch's rows into ONE row of `micro_batch x max_length`
tokens, its documents told apart by position ids that restart at 0. With flash attention's
variable-length kernels that costs nothing. With SDPA or eager attention (every CPU, and GPUs without
flash-attn) transformers turns the restarting positions into a block mask over that one long row, and
the kernel computes attention over all of it: `micro_batch` times the attention work of the same
tokens in `micro_batch` rows (benchmarks/packed_row_cost.py measured one 1,024-token row at 1.19-1.30x
the decoder cost of four 256-token rows on llama-60m).

`PackedRowsCollator` gives each packed row its own batch row instead: the same tokens, the same
labels (the first token of each document is not scored, as TRL does), position ids restarting per
document within each row, and no attention mask, so transformers builds the same per-document causal
mask (`find_packed_sequence_indices` works per row) over rows of at most `max_length`. Rows shorter
than the longest are padded at the end with the pad token, labels -100 and positions that continue the
row's last document: causal attention never lets a real token see them, so the loss and gradients
equal the one-row layout's (tests/test_packing.py).

The batch carries `PACKED_TOKENS` (the real tokens in it, without padding), which the trainer removes
before the model is called (training/lm_loss.py) and uses for the logged token count."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

PACKED_TOKENS = "packed_tokens"
"""Batch key: the number of real (not padding) tokens in the batch, a 0-d tensor; not a model input."""


@dataclass
class PackedRowsCollator:
    """Collates TRL-packed rows (`input_ids`, optional `labels`, `seq_lengths`) one batch row per packed row."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = [list(e["input_ids"]) for e in examples]
        labels = [list(e.get("labels", e["input_ids"])) for e in examples]
        lengths = [len(row) for row in ids]
        width = max(lengths)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        n = len(examples)
        input_ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        targets = torch.full((n, width), -100, dtype=torch.long)
        positions = torch.empty((n, width), dtype=torch.long)
        for i, (row, row_labels, example) in enumerate(zip(ids, labels, examples, strict=True)):
            size = lengths[i]
            if len(row_labels) != size:
                raise ValueError(f"a packed row of {size} tokens has {len(row_labels)} labels")
            input_ids[i, :size] = torch.tensor(row, dtype=torch.long)
            targets[i, :size] = torch.tensor(row_labels, dtype=torch.long)
            documents = list(example.get("seq_lengths") or [size])
            if sum(documents) != size:
                raise ValueError(f"a packed row of {size} tokens lists documents of {sum(documents)}")
            positions[i] = row_positions(documents, width)
        targets[positions == 0] = -100  # a document's first token is not predicted from the one before it
        return {
            "input_ids": input_ids,
            "labels": targets,
            "position_ids": positions,
            PACKED_TOKENS: torch.tensor(sum(lengths)),
        }


def row_positions(documents: Sequence[int], width: int) -> torch.Tensor:
    """Position ids of one row holding documents of these lengths, padded to `width`: 0.. per document;
    the padding continues the last document's positions (one causal tail, never seen by a real token)."""
    out = torch.empty(width, dtype=torch.long)
    start = 0
    for length in documents:
        out[start : start + length] = torch.arange(length)
        start += length
    if start < width:
        last = documents[-1] if documents else 0
        out[start:] = torch.arange(last, last + width - start)
    return out
