"""Cleaning rules, each switchable by ``data.cleaning`` and each counted.

Order per split: NFC normalisation -> whitespace normalisation -> drop empty rows -> exact
duplicates within the split (not in test: the scored set stays whole, so a benchmark's test set
keeps its official size). Then across splits: a row also in test is removed from validation
and train, a row also in validation is removed from train (test stays untouched, so it never
leaks into training). Then ``data.max_samples`` caps each split and ``data.max_train_samples`` the
training split (seeded; see splits.sample_rows). Row identity for
duplicates is every canonical column except ``id``.

Whitespace normalisation: ends stripped, non-breaking and other odd spaces become plain spaces,
runs of spaces/tabs inside a line collapse to one; newlines and each line's leading indentation
are kept (code and lists keep their shape). CRLF becomes LF. ``prompt`` and ``completion`` keep
their leading/trailing whitespace (it decides how their boundary tokenizes).
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections.abc import Iterable
from typing import Any, TypeVar

from ..recipe.schema import CleaningSpec
from .sources import WHERE

ODD_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\u180e\ufeff\u200b]")
INNER_RUNS = re.compile(r"(?<=\S)[ \t]{2,}|(?<=\S)\t")
TRAILING = re.compile(r"[ \t]+(?=\n)")
MAY_CHANGE = re.compile(ODD_SPACES.pattern + r"|[\r\t]|  | \n")
T = TypeVar("T")  # a row, or a row number standing for it
SKIP = ("id", WHERE)
EDGE_KEYS = ("prompt", "completion")


def normalize_value(value: Any, fn) -> Any:
    """Apply a string function to every string inside a value (lists and dicts walked)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [normalize_value(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: normalize_value(v, fn) for k, v in value.items()}
    return value


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def tidy_whitespace(text: str) -> str:
    if not MAY_CHANGE.search(text) and not (text[:1].isspace() or text[-1:].isspace()):
        return text  # nothing any rule below would change (the common case, checked in one scan)
    text = ODD_SPACES.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = INNER_RUNS.sub(" ", text)
    return TRAILING.sub("", text).strip()


def tidy_inside(text: str) -> str:
    """Whitespace normalisation that keeps the edges: a prompt's trailing and a completion's leading
    space decide how their boundary tokenizes (``"Answer:"`` + ``" yes"``)."""
    core = text.strip()
    if not core:
        return tidy_whitespace(text)
    start = text.index(core[0])
    return text[:start] + tidy_whitespace(core) + text[start + len(core) :]


def normalize_rows(
    rows: list[dict[str, Any]], cleaning: CleaningSpec, counts: dict[str, int]
) -> list[dict[str, Any]]:
    """NFC and whitespace normalisation; counts rows changed by each rule."""
    rules = active_rules(cleaning)
    return [normalize_row(row, rules, counts) for row in rows]


def active_rules(cleaning: CleaningSpec) -> tuple[str, ...]:
    return tuple(
        name
        for name, on in (
            ("unicode", cleaning.normalize_unicode),
            ("whitespace", cleaning.normalize_whitespace),
        )
        if on
    )


def normalize_row(row: dict[str, Any], rules: tuple[str, ...], counts: dict[str, int]) -> dict[str, Any]:
    """One row through ``rules`` (``active_rules``), counting a rule when it changed the row."""
    if _unchanged(row, rules):
        return row
    for name in rules:
        new = {k: (v if k in SKIP else normalize_value(v, _rule(name, k))) for k, v in row.items()}
        if new != row:
            counts[name] = counts.get(name, 0) + 1
        row = new
    return row


def _unchanged(row: dict[str, Any], rules: tuple[str, ...]) -> bool:
    """A quick test that no rule would change the row, for rows of ASCII text (the common case): ASCII is
    NFC already, and no whitespace rule applies to text without ``MAY_CHANGE`` and without space at its
    ends (``prompt``/``completion``: text that is not all space). False sends the row through the rules."""
    try:  # a separator no rule matches; TypeError: a value that is not text
        joined = "\x00".join([v for k, v in row.items() if k not in SKIP])
    except TypeError:
        return False
    if not joined.isascii():
        return False
    if "whitespace" not in rules:
        return True
    # tidy_whitespace's own test (MAY_CHANGE) on ASCII text, whose odd spaces are all beyond ASCII: four
    # substring scans cost a fifth of the regular expression's
    if "  " in joined or " \n" in joined or "\t" in joined or "\r" in joined:
        return False
    for key, value in row.items():
        if key in SKIP or not value:
            continue
        if value[0].isspace() or value[-1].isspace():
            if key not in EDGE_KEYS or value.isspace():
                return False
    return True


def _rule(name: str, key: str):
    if name == "unicode":
        return nfc
    if key == "tokens":  # a token made only of odd spaces stays as it is, keeping tokens and tags aligned
        return lambda token: tidy_whitespace(token) or token
    return tidy_inside if key in EDGE_KEYS else tidy_whitespace


def is_empty(row: dict[str, Any], layout: str) -> bool:
    """A row with nothing to learn from: empty text, completion, assistant turns, tokens or label."""
    if layout == "chat":
        return not any(m["role"] == "assistant" and m["content"].strip() for m in row["messages"])
    if layout == "tagging":
        return not row["tokens"]
    if layout == "instruction":
        return not row["instruction"].strip() or not row["output"].strip()
    if layout == "prompt_completion":
        return not row["completion"].strip()
    if "text_b" in row and not row["text_b"].strip():  # a sentence pair needs both texts
        return True
    if layout in ("classification", "relation"):
        return not row["text"].strip() or (isinstance(row["label"], str) and not row["label"])
    return not row["text"].strip()


KEY_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode  # json.dumps(..., sort_keys=True,
# ensure_ascii=False), without building an encoder per call


QUOTE = json.encoder.encode_basestring  # a string as the encoder writes it (ensure_ascii=False)


def strings_json(items: Iterable[tuple[Any, Any]]) -> str:
    """A JSON object of string keys and values, as ``json.dumps(..., ensure_ascii=False)`` writes it (at a
    third of its cost); TypeError when a key or value is not a string."""
    return "{" + ", ".join([QUOTE(k) + ": " + QUOTE(v) for k, v in items]) + "}"


def row_key(row: dict[str, Any]) -> str:
    """The row without ``id`` and ``_where`` as sorted JSON."""
    items = [(k, v) for k, v in row.items() if k not in SKIP]
    try:
        items.sort()  # keys are unique, so only keys are compared
        return strings_json(items)
    except TypeError:  # a key or value that is not a string
        return KEY_JSON(dict(items))


def row_json_and_key(row: dict[str, Any]) -> tuple[str, str]:
    """(``json.dumps(row, ensure_ascii=False)``, ``row_key(row)``) with each string quoted once, for a row of
    string keys and values; TypeError otherwise."""
    pairs = [(k, QUOTE(k) + ": " + QUOTE(v)) for k, v in row.items()]
    text = "{" + ", ".join([pair for _, pair in pairs]) + "}"
    pairs.sort()  # keys are unique, so only keys are compared
    return text, "{" + ", ".join([pair for k, pair in pairs if k not in SKIP]) + "}"


def drop_empty(rows: list[dict[str, Any]], layout: str) -> tuple[list[dict[str, Any]], int]:
    kept = [row for row in rows if not is_empty(row, layout)]
    return kept, len(rows) - len(kept)


def drop_duplicates(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Keep the first of each exact duplicate."""
    seen: set[str] = set()
    kept = []
    for row in rows:
        key = row_key(row)
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept, len(rows) - len(kept)


def drop_cross_split(splits: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Remove from validation rows also in test, and from train rows also in validation or test."""
    dropped = {}
    protected: set[str] = set()
    for name in ("test", "validation", "train"):
        rows = splits.get(name)
        if rows is None:
            continue
        kept = [row for row in rows if row_key(row) not in protected]
        dropped[name] = len(rows) - len(kept)
        splits[name] = kept
        protected |= {row_key(row) for row in kept}
    return dropped


def cap_rows(rows: list[T], limit: int | None, seed: int) -> tuple[list[T], int]:
    """At most ``limit`` rows, a seeded sample kept in source order."""
    if limit is None or len(rows) <= limit:
        return rows, 0
    picked = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in picked], len(rows) - limit
