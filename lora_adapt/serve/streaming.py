"""Streaming answers out of a batched ``generate``: a transformers streamer receives each step's tokens
for the whole batch; each streaming row turns its tokens into text deltas.

A row's deltas always form a prefix of the answer the batch finally returns for it: tokens after the
row's end token or past its own budget are ignored, text that could be the start of a stop string is held
back until it is not, and so is a trailing incomplete UTF-8 character. The server sends whatever the
final answer holds beyond the streamed prefix in the last chunk."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from transformers.generation.streamers import BaseStreamer

from ..domains.runner import cut_at_stop

REPLACEMENT = "\ufffd"


class RowStream:
    """One streaming row: its tokens so far, and how much of their text was sent."""

    def __init__(
        self, tokenizer, budget: int, end_ids: set[int], stops: Sequence[str], emit: Callable[[str], None]
    ):
        self.tokenizer, self.budget, self.end_ids, self.stops, self.emit = (
            tokenizer,
            budget,
            end_ids,
            stops,
            emit,
        )
        self.ids: list[int] = []
        self.sent = 0
        self.done = False

    def push(self, token: int) -> None:
        if self.done:
            return
        if token in self.end_ids:
            self.done = True
            return
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        text, stopped = cut_at_stop(text, self.stops)
        safe = len(text) if stopped else len(text) - _held_back(text, self.stops)
        if not stopped and text.endswith(REPLACEMENT):
            safe = min(safe, len(text) - 1)
        if safe > self.sent:
            self.emit(text[self.sent : safe])
            self.sent = safe
        self.done = stopped or len(self.ids) >= self.budget


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Characters at the end of ``text`` that begin some stop string (they may still become one)."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                longest = max(longest, n)
                break
    return longest


class GroupStreamer(BaseStreamer):
    """Hands each generated step's tokens ([batch]) to the rows that stream (None for the others)."""

    def __init__(self, rows: Sequence[RowStream | None]):
        self.rows = list(rows)
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first puts the prompt ids
            self.prompt_seen = True
            return
        tokens = value.view(-1).tolist()
        for row, token in zip(self.rows, tokens, strict=False):
            if row is not None:
                row.push(int(token))

    def end(self) -> None:
        for row in self.rows:
            if row is not None:
                row.done = True
