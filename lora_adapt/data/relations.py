"""Relation rows -> one sentence with ``<e1>...</e1>`` and ``<e2>...</e2>`` around the two entities.

The head pools the states at ``<e1>`` and ``<e2>`` (``task.pooling: entity_start``), so every relation
row is brought to that form:

- entities given as character offsets (``e1_start``/``e1_end``/``e2_start``/``e2_end``, end exclusive,
  optional ``e1_type``/``e2_type``): markers are inserted; a typed entity reads ``<e1>[TYPE] span</e1>``.
  Spans must be inside the text, non-empty and must not overlap (the error names the row);
- common marker syntaxes of public corpora are rewritten: ``[E1]...[/E1]`` (Baldini Soares et al.),
  ``<< ... >>`` / ``[[ ... ]]`` (SciBERT's ChemProt), and anonymised typed placeholders such as
  ``@GENE$`` / ``@CHEMICAL$`` (BLURB: ChemProt, DDI, GAD; the first placeholder becomes e1, the second e2,
  the placeholder itself is kept as the entity's text);
- ``<e1>...</e1>`` rows pass through.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import DataError

OFFSET_COLUMNS = ("e1_start", "e1_end", "e2_start", "e2_end")
TYPE_COLUMNS = ("e1_type", "e2_type")
NATIVE = (re.compile(r"<e1>.+?</e1>", re.S), re.compile(r"<e2>.+?</e2>", re.S))
BRACKETED = {
    "[E1]...[/E1]": (r"\[E1\]", r"\[/E1\]", r"\[E2\]", r"\[/E2\]"),
    "<< >> / [[ ]]": (r"<<\s?", r"\s?>>", r"\[\[\s?", r"\s?\]\]"),
}
PLACEHOLDER = re.compile(r"@[A-Z][A-Za-z0-9_-]*\$")


def has_offsets(row: dict[str, Any]) -> bool:
    return any(column in row for column in OFFSET_COLUMNS)


def marked_text(row: dict[str, Any], where: str) -> str:
    """The row's sentence with ``<e1>``/``<e2>`` markers (inserted from offsets or rewritten)."""
    text = row["text"]
    if has_offsets(row):
        return insert_markers(text, _spans(row, where), _types(row), where)
    return normalise_markers(text, where)


def normalise_markers(text: str, where: str) -> str:
    """Rewrite a known marker syntax to ``<e1>``/``<e2>``; a sentence without any is an error."""
    if all(pattern.search(text) for pattern in NATIVE):
        return text
    for open1, close1, open2, close2 in BRACKETED.values():
        rewritten = re.sub(open1, "<e1>", text)
        rewritten = re.sub(close1, "</e1>", rewritten)
        rewritten = re.sub(open2, "<e2>", rewritten)
        rewritten = re.sub(close2, "</e2>", rewritten)
        if rewritten != text and all(pattern.search(rewritten) for pattern in NATIVE):
            return rewritten
    placeholders = list(PLACEHOLDER.finditer(text))
    if len(placeholders) == 2:
        (a, b) = placeholders
        spans = ((a.start(), a.end()), (b.start(), b.end()))
        return insert_markers(text, spans, (None, None), where)
    missing = [
        name
        for name, pattern in zip(("<e1>..</e1>", "<e2>..</e2>"), NATIVE, strict=True)
        if not pattern.search(text)
    ]
    found = f" ({len(placeholders)} @TYPE$ placeholders; two are needed)" if placeholders else ""
    raise DataError(
        f"{where}: relation sentence lacks entity marker(s) {' and '.join(missing)}{found}: {text[:80]!r}",
        hint="mark both entities ('the <e1>cup</e1> in the <e2>box</e2>'; [E1]..[/E1] and @GENE$ placeholders "
        "are read too), or give character offsets with data.columns e1_start/e1_end/e2_start/e2_end",
    )


def insert_markers(
    text: str,
    spans: tuple[tuple[int, int], tuple[int, int]],
    types: tuple[str | None, str | None],
    where: str,
) -> str:
    """``text`` with ``<e1>``/``<e2>`` around the two character spans (checked first)."""
    check_spans(text, spans, where)
    pieces = []
    for tag, (start, end), kind in sorted(
        zip(("e1", "e2"), spans, types, strict=True), key=lambda x: -x[1][0]
    ):
        inner = f"[{kind}] {text[start:end]}" if kind else text[start:end]
        pieces.append((start, end, f"<{tag}>{inner}</{tag}>"))
    for start, end, marked in pieces:  # right to left, so earlier offsets stay valid
        text = text[:start] + marked + text[end:]
    return text


def check_spans(text: str, spans: tuple[tuple[int, int], ...], where: str) -> None:
    for name, (start, end) in zip(("e1", "e2"), spans, strict=True):
        if not 0 <= start < end <= len(text):
            raise DataError(
                f"{where}: entity {name} span [{start}, {end}) is not inside the text (length {len(text)}) "
                "or is empty",
                hint="offsets are character positions, start inclusive, end exclusive",
            )
    (s1, e1), (s2, e2) = spans
    if s1 < e2 and s2 < e1:
        raise DataError(
            f"{where}: entity spans e1 [{s1}, {e1}) {text[s1:e1]!r} and e2 [{s2}, {e2}) {text[s2:e2]!r} overlap",
            hint="relation entities must be disjoint; fix or remove the row",
        )


def _spans(row: dict[str, Any], where: str) -> tuple[tuple[int, int], tuple[int, int]]:
    missing = [c for c in OFFSET_COLUMNS if c not in row]
    if missing:
        raise DataError(
            f"{where}: entity offsets need all of {list(OFFSET_COLUMNS)}; missing {missing}",
            hint="map them with data.columns, e.g. {e1_start: 'entities[0].start', ...}",
        )
    values = [_offset(row[c], c, where) for c in OFFSET_COLUMNS]
    return (values[0], values[1]), (values[2], values[3])


def _offset(value: Any, column: str, where: str) -> int:
    if isinstance(value, bool):
        value = None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int):
        raise DataError(f"{where}: {column} must be an integer character offset, got {value!r}")
    return value


def _types(row: dict[str, Any]) -> tuple[str | None, str | None]:
    out = []
    for column in TYPE_COLUMNS:
        value = row.get(column)
        out.append(str(value).strip() or None if value is not None else None)
    return out[0], out[1]
