"""Held-out prompts for merge verification: the run's test file when the recipe names one, else a
fixed built-in set. The run directory stores no data, so this reads the recipe's ``data.test`` file
(jsonl, json, csv, tsv or txt) directly and records which source was used."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..recipe import Recipe

# Generic prompts across the domains the engine targets; used when no test file is available.
BUILTIN_PROMPTS = (
    "The patient was admitted with chest pain and shortness of breath. The first step is",
    "Either party may terminate this agreement with thirty days written notice, provided that",
    "Hello, I was charged twice for the same order and would like a refund because",
    "Summarise the following clause in plain English: the supplier is liable for late delivery.",
    "What is the capital of France? Answer in one word.",
    "Write a short, polite reply to a customer who cannot log in to their account.",
    "The quarterly report shows revenue grew by 12 percent while operating costs",
    "Question: Is aspirin an anticoagulant? Answer:",
)
MAX_PROMPTS = 8
READABLE = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "txt",
}


@dataclass(frozen=True)
class Prompts:
    texts: tuple[str, ...]
    source: str  # "test_file" | "builtin" | "given"
    path: str | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "path": self.path, "count": len(self.texts), "note": self.note}


def held_out_prompts(recipe: Recipe | None, tokenizer: Any, given: list[str] | None = None) -> Prompts:
    if given:
        return Prompts(tuple(given), "given")
    path = recipe.data.test if recipe is not None else None
    if recipe is None or path is None:
        return Prompts(BUILTIN_PROMPTS, "builtin", note="the recipe names no data.test file")
    if not Path(path).is_file() or Path(path).suffix.lower() not in READABLE:
        return Prompts(
            BUILTIN_PROMPTS, "builtin", str(path), note="data.test is missing or not jsonl/json/csv/tsv/txt"
        )
    try:
        rows = _read_rows(Path(path))
    except (OSError, ValueError, csv.Error) as exc:
        return Prompts(BUILTIN_PROMPTS, "builtin", str(path), note=f"cannot read data.test: {exc}")
    texts = [t for t in (_row_text(row, recipe.data.columns, tokenizer) for row in rows) if t][:MAX_PROMPTS]
    if not texts:
        return Prompts(BUILTIN_PROMPTS, "builtin", str(path), note="no usable text in data.test")
    return Prompts(tuple(texts), "test_file", str(path))


def _read_rows(path: Path, limit: int = 200) -> list[Any]:
    kind = READABLE[path.suffix.lower()]
    text = path.read_text(encoding="utf-8-sig")
    if kind == "jsonl":
        return [json.loads(line) for line in text.splitlines()[:limit] if line.strip()]
    if kind == "json":
        data = json.loads(text)
        return list(data[:limit] if isinstance(data, list) else data.get("data", [])[:limit])
    if kind in ("csv", "tsv"):
        return list(csv.DictReader(text.splitlines()[: limit + 1], delimiter="\t" if kind == "tsv" else ","))
    blocks = text.split("\n\n") if "\n\n" in text else text.splitlines()
    return [{"text": block} for block in blocks[:limit]]


def _row_text(row: Any, columns: dict[str, str], tokenizer: Any) -> str:
    """The input part of a row: chat turns before the last answer, prompt, instruction+input, or text."""
    if not isinstance(row, dict):
        return ""

    def get(name: str) -> Any:
        return row.get(columns.get(name, name))

    messages = get("messages")
    if isinstance(messages, list) and messages:
        return _chat_prompt(messages, tokenizer)
    if isinstance(get("prompt"), str):
        return get("prompt").strip()
    if isinstance(get("instruction"), str):
        return "\n".join(str(x) for x in (get("instruction"), get("input")) if x).strip()
    if isinstance(get("tokens"), list):
        return " ".join(map(str, get("tokens")))
    text = get("text")
    return text.strip() if isinstance(text, str) else ""


def _chat_prompt(messages: list[Any], tokenizer: Any) -> str:
    turns = [m for m in messages if isinstance(m, dict) and "content" in m]
    while turns and turns[-1].get("role") == "assistant":
        turns = turns[:-1]
    if not turns:
        return ""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    return "\n".join(str(m["content"]) for m in turns)
