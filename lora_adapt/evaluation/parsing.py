"""Generated answer text -> a prediction, or ``None`` when it cannot be read (counted as invalid).

Parsing is strict on purpose: an answer is mapped to a label only when it *is* that label (exactly,
or ignoring case and surrounding quotes / a final full stop). Nothing is mapped to "the closest"
label, so a model that rambles is scored as wrong, not rescued by the scorer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

NONE_ANSWERS = ("none", "")
STRIP = " \t\r\n\"'`.;"


def first_line(text: str) -> str:
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def match_label(answer: str, labels: Sequence[str]) -> str | None:
    """The label the answer names: exact match first, then case-insensitive; else None."""
    cleaned = answer.strip(STRIP)
    if cleaned in labels:
        return cleaned
    folded = {label.casefold(): label for label in labels}
    return folded.get(cleaned.casefold())


def parse_label(text: str, labels: Sequence[str]) -> str | None:
    """A single-label answer: the first non-empty line must be one of ``labels``."""
    return match_label(first_line(text), labels)


def parse_multilabel(text: str, labels: Sequence[str], separator: str) -> list[str] | None:
    """``a|b`` -> ["a", "b"]; ``none`` -> []; any part that is not a label makes the answer invalid."""
    line = first_line(text)
    if line.strip(STRIP).casefold() in NONE_ANSWERS:
        return []
    found = [match_label(part, labels) for part in line.split(separator)]
    if any(label is None for label in found):
        return None
    return sorted(set(found))  # type: ignore[arg-type]


def parse_entities(text: str, entity_types: Sequence[str]) -> list[tuple[str, str]] | None:
    """``TYPE: span`` lines -> [(TYPE, span)]; ``none`` -> []. A malformed line or unknown type: invalid."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines or (len(lines) == 1 and lines[0].strip(STRIP).casefold() == "none"):
        return []
    out = []
    for line in lines:
        name, sep, span = line.partition(":")
        kind = match_label(name, entity_types) if sep else None
        if kind is None or not span.strip():
            return None
        out.append((kind, " ".join(span.split())))
    return out


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The answer must start with a JSON object (trailing text after it is ignored)."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(stripped)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None
