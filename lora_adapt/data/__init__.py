"""Data preparation: sources -> canonical rows -> cleaning -> seeded splits -> tokens and masks.

Public API (see DEVELOPERS.md, "Contracts between modules")::

    prepare_data(spec, task, tokenizer, *, head) -> PreparedData
    load_split_rows(spec, task) -> (rows per split, stats)          # no tokenizer
    load_rows_from_file(path, spec, task) -> rows                   # one file, for `eval --data`
    tokenize_head_rows(rows, spec, task, tokenizer, labels, scaling) -> Dataset   # those rows for a head
    render_preview(prepared, tokenizer, n=3, split="train") -> str
    generative_prompt(row, task, spec, labels) -> (prompt, gold completion)

Heavy libraries (datasets, transformers) are imported only when data is prepared.
"""

from __future__ import annotations

from .preparation import PreparedData, load_rows_from_file, load_split_rows, prepare_data, tokenize_head_rows
from .preview import render_preview
from .prompts import generative_prompt
from .templates import CHAT_TEMPLATES

__all__ = [
    "CHAT_TEMPLATES",
    "PreparedData",
    "generative_prompt",
    "load_rows_from_file",
    "load_split_rows",
    "prepare_data",
    "render_preview",
    "tokenize_head_rows",
]
