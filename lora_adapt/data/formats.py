"""Layouts: a file's rows (user column names) -> canonical rows for one layout.

Layouts: sft ``completion`` (text), ``prompt_completion`` (prompt, completion), ``instruction``
(instruction, input?, output), ``chat`` (messages); tasks ``classification`` (text, text_b?, label),
``regression`` (text, text_b?, targets: list of floats), ``tagging`` (tokens, tags), ``relation`` (text
with <e1>/<e2> markers, label), ``extraction`` (text, output JSON object). Every canonical row may also
carry ``id`` and ``system``. A row with ``text_b`` is a sentence pair (``text`` is its first text; the
column ``text_a`` is read as ``text``): when the first row of a file is a pair, every row must be.

Column values are type-checked as they are read: a text or label column that yields an object or a list
(e.g. a mapped path that stops one step short) is an error naming the row and the column.
"""

from __future__ import annotations

import datetime
import decimal
import json
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import DataError
from ..recipe.schema import CANONICAL_COLUMNS, DataSpec, TaskSpec
from .paths import describe_value, is_path, lookup, parse_path
from .relations import OFFSET_COLUMNS, TYPE_COLUMNS, marked_text
from .sources import WHERE
from .targets import read_targets

TASK_LAYOUTS = {
    "classification": "classification",
    "regression": "regression",
    "token_classification": "tagging",
    "relation_classification": "relation",
    "extraction": "extraction",
}
REQUIRED = {
    "completion": ("text",),
    "prompt_completion": ("prompt", "completion"),
    "instruction": ("instruction", "output"),
    "chat": ("messages",),
    "classification": ("text", "label"),
    "regression": ("text",),
    "tagging": ("tokens", "tags"),
    "relation": ("text", "label"),
    "extraction": ("text", "output"),
}
KEEP = {layout: cols + ("id", "system") for layout, cols in REQUIRED.items()}
KEEP["instruction"] += ("input",)
KEEP["classification"] += ("text_b",)
KEEP["regression"] += ("text_b",)
KEEP["relation"] += OFFSET_COLUMNS + TYPE_COLUMNS
PAIR_LAYOUTS = ("classification", "regression")
SCALAR = (str, int, float, bool)
WRITTEN_OUT = (datetime.date, datetime.time, decimal.Decimal)  # parquet values a text column writes out
SHAREGPT_ROLES = {
    "human": "user",
    "gpt": "assistant",
    "system": "system",
    "user": "user",
    "assistant": "assistant",
}


def detect_sft_format(row: dict[str, Any]) -> str:
    """messages > instruction+output > prompt+completion > text."""
    if "messages" in row:
        return "chat"
    if "instruction" in row and "output" in row:
        return "instruction"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    return "completion"


def rows_layout(spec: DataSpec, task: TaskSpec, first_row: dict[str, Any]) -> str:
    """The layout of canonical rows: the task's, or the sft format (given or detected)."""
    if task.type != "sft":
        return TASK_LAYOUTS[task.type]
    return spec.format if spec.format != "auto" else detect_sft_format(first_row)


def rename_columns(rows: list[dict[str, Any]], spec: DataSpec, source: str) -> list[dict[str, Any]]:
    """Apply ``data.columns`` (canonical -> user name or path), checking the user's names exist; the column
    ``text_a`` becomes ``text``."""
    if not rows or not (spec.columns or "text_a" in rows[0]):
        return rows
    have = [k for k in rows[0] if k != WHERE]
    for canonical, user in spec.columns.items():
        if user not in rows[0] and canonical not in rows[0] and not is_path(user):
            raise DataError(
                f"{source}: data.columns maps '{canonical}' to '{user}', but the data has no column '{user}' "
                f"(columns: {', '.join(have)})",
                hint="fix data.columns to name one of the columns above (or a path such as `meta.label`)",
            )
    return [_renamed(row, spec.columns) for row in rows]


def rename_row(row: dict[str, Any], spec: DataSpec) -> dict[str, Any]:
    """One row of ``rename_columns`` (whose first row said renaming applies)."""
    return _renamed(row, spec.columns)


def renames(spec: DataSpec, first: dict[str, Any]) -> bool:
    """Whether ``rename_columns`` changes rows whose first row is ``first``."""
    return bool(spec.columns or "text_a" in first)


def _renamed(row: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    """The row with each mapped column under its canonical name. What the mapping names wins over a column
    that already has the canonical name (a mapping says which one the user means); a canonical column is
    kept only when the mapped column (or the path's first step) is absent from this row."""
    mapped = {canonical: user for canonical, user in columns.items() if user != canonical}
    out = {k: v for k, v in row.items() if k not in mapped.values()}
    for canonical, user in mapped.items():
        if user in row:
            out[canonical] = row[user]
        elif is_path(user) and (_first_step(user) in row or canonical not in row):
            out[canonical] = lookup(row, user, row.get(WHERE, "?"), f"data.columns.{canonical}")
    if "text_a" in out and "text" not in out:
        out["text"] = out.pop("text_a")
    return out


def _first_step(path: str) -> Any:
    try:
        return parse_path(path)[0]
    except ValueError:  # malformed: lookup says so, naming the row
        return path


def check_columns(rows: list[dict[str, Any]], layout: str, spec: DataSpec, source: str) -> None:
    """Every required canonical column is present in the first row."""
    if not rows:
        return
    have = [k for k in rows[0] if k != WHERE]
    missing = [c for c in REQUIRED[layout] if c not in rows[0]]
    if not missing:
        return
    reverse = {v: k for k, v in spec.columns.items()}
    shown = ", ".join(f"{reverse[c]} (mapped to {c})" if c in reverse else c for c in have) or "none"
    unmapped = [c for c in have if c not in CANONICAL_COLUMNS]
    example = (
        ", ".join(f"{m}: {u}" for m, u in zip(missing, unmapped, strict=False))
        or f"{missing[0]}: YOUR_COLUMN"
    )
    hint = f"map your column names with data.columns, e.g. `columns: {{{example}}}`"
    if layout in ("completion", "prompt_completion", "instruction", "chat"):
        hint += (
            "; sft data needs text, prompt+completion, instruction(+input)+output, or messages (data.format)"
        )
    raise DataError(
        f"{source}: missing column(s) {missing} for the {layout} layout; the data has: {shown}", hint=hint
    )


def to_canonical(rows: list[dict[str, Any]], layout: str, task: TaskSpec) -> list[dict[str, Any]]:
    """Keep the layout's canonical columns and coerce their values (errors name file:line)."""
    convert = canonical_converter(rows[0] if rows else {}, layout, task)
    return [convert(row) for row in rows]


def canonical_converter(first: dict[str, Any], layout: str, task: TaskSpec) -> Callable[[dict], dict]:
    """``to_canonical`` for one row at a time; ``first`` is the split's first row (a sentence pair there
    makes ``text_b`` required in every row)."""
    convert = {
        "chat": _chat_row,
        "classification": _classification_row,
        "regression": _regression_row,
        "tagging": _tagging_row,
        "relation": _relation_row,
        "extraction": _extraction_row,
    }.get(layout, _text_row)
    required = REQUIRED[layout] + (("text_b",) if layout in PAIR_LAYOUTS and "text_b" in first else ())
    keep = KEEP[layout]

    def one(row: dict[str, Any]) -> dict[str, Any]:
        kept = {k: row[k] for k in keep if k in row}
        kept[WHERE] = row.get(WHERE, "?")
        missing = [c for c in required if c not in kept]
        if missing:
            raise DataError(
                f"{kept[WHERE]}: this row has no {missing} (the first row has them)",
                hint="every row needs the same columns; fix or remove the row",
            )
        if layout == "regression":
            kept["targets"] = read_targets(row, task, kept[WHERE])
        return convert(kept, task)

    return one


def is_pair(rows: Sequence[dict[str, Any]]) -> bool:
    """Canonical rows are sentence pairs (``text`` + ``text_b``)."""
    return bool(rows) and "text_b" in rows[0]


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _text_value(value: Any, column: str, where: str, *, what: str | None = None) -> str:
    """A text column's value: a string (numbers, and a parquet file's dates and decimals, are written
    out); an object, a list or bytes is an error, never its Python repr trained on as text."""
    if value is not None and not isinstance(value, (*SCALAR, *WRITTEN_OUT)):
        hint = (
            "decode the bytes to text before preparing"
            if isinstance(value, (bytes, bytearray))
            else "map data.columns to a text field (a path such as `doc.text` reaches inside objects)"
        )
        what = what or f"column {column!r} yields"
        raise DataError(f"{where}: {what} {describe_value(value)}, not text", hint=hint)
    return _as_text(value)


def _text_row(row: dict[str, Any], task: TaskSpec) -> dict[str, Any]:
    """Every column text; an ``id`` (never trained on) may be any value and is written out."""
    if all(type(v) is str for v in row.values()):  # the common case, and what the rule below gives it
        return row
    return {
        k: v if k == WHERE else _as_text(v) if k == "id" else _text_value(v, k, row[WHERE])
        for k, v in row.items()
    }


def _chat_row(row: dict[str, Any], task: TaskSpec) -> dict[str, Any]:
    messages = row["messages"]
    if isinstance(messages, str):
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError:
            raise DataError(f"{row[WHERE]}: 'messages' is a string but not a JSON list of messages") from None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise DataError(f"{row[WHERE]}: 'messages' must be a list of {{role, content}} objects")
    row["messages"] = [_message(m, row[WHERE]) for m in messages]
    if "system" in row:
        row["system"] = _text_value(row["system"], "system", row[WHERE])
    return row


def _message(message: dict[str, Any], where: str) -> dict[str, str]:
    role = message.get("role", message.get("from"))
    content = message.get("content", message.get("value"))
    role = SHAREGPT_ROLES.get(str(role), role)
    if role not in ("system", "user", "assistant", "tool"):
        raise DataError(f"{where}: message role {role!r} is not one of system, user, assistant, tool")
    return {"role": role, "content": _content_text(content, role, where)}


def _content_text(content: Any, role: str, where: str) -> str:
    """A message's content: text, or OpenAI's list of content parts when every part is text (joined with
    newlines, as vLLM does); image or audio parts, objects and bytes are errors."""
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        kinds = sorted({str(part.get("type")) for part in content} - {"text"})
        if not kinds and all(isinstance(part.get("text"), str) for part in content):
            return "\n".join(part["text"] for part in content)
        raise DataError(
            f"{where}: a {role} message's content has parts that are not text ({', '.join(kinds) or 'no text'})",
            hint="lora-adapt trains on text: keep only {type: text, text: ...} parts, or give the content as a string",
        )
    return _text_value(content, "content", where, what=f"a {role} message's content is")


def _label_value(value: Any, task: TaskSpec, where: str) -> str:
    """A label as a string; an integer indexes task.labels when those are given and it is not one of them."""
    if value is not None and not isinstance(value, SCALAR):
        raise DataError(
            f"{where}: the label column yields {describe_value(value)}, not a label",
            hint="map data.columns.label to a string field, e.g. `relation[0].relation_type`"
            if isinstance(value, (list, dict))
            else "labels are strings or integers",
        )
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or task.labels is None
        or str(value) in task.labels
    ):
        return _as_text(value).strip()
    if not 0 <= value < len(task.labels):
        raise DataError(f"{where}: label index {value} is outside task.labels (0..{len(task.labels) - 1})")
    return task.labels[value]


def _classification_row(row: dict[str, Any], task: TaskSpec) -> dict[str, Any]:
    value, where = row["label"], row[WHERE]
    if task.multi_label:
        items = (
            value
            if isinstance(value, list) and all(isinstance(v, SCALAR) for v in value)
            else _label_value(value, task, where).split(task.label_separator)
        )
        labels = [_label_value(v, task, where) for v in items]
        row["label"] = list(dict.fromkeys(x for x in labels if x))
    else:
        row["label"] = _label_value(value, task, where)
    return _texts(row)


def _texts(row: dict[str, Any]) -> dict[str, Any]:
    for column in ("text", "text_b"):
        if column in row:
            row[column] = _text_value(row[column], column, row[WHERE])
    return row


def _regression_row(row: dict[str, Any], task: TaskSpec) -> dict[str, Any]:
    return _texts(row)


def _relation_row(row: dict[str, Any], task: TaskSpec) -> dict[str, Any]:
    row = _classification_row(row, task)
    row["text"] = marked_text(row, row[WHERE])
    for column in OFFSET_COLUMNS + TYPE_COLUMNS:
        row.pop(column, None)
    return row


def _tagging_row(row: dict[str, Any], task: TaskSpec) -> dict[str, Any]:
    tokens, tags, where = row["tokens"], row["tags"], row[WHERE]
    tokens = tokens.split() if isinstance(tokens, str) else list(tokens or [])
    tags = tags.split() if isinstance(tags, str) else list(tags or [])
    if len(tokens) != len(tags):
        raise DataError(
            f"{where}: {len(tokens)} tokens but {len(tags)} tags; every token needs exactly one tag",
            hint="check the token and tag lists (CoNLL: one 'TOKEN ... TAG' per line)",
        )
    row["tokens"] = [_as_text(t) for t in tokens]
    row["tags"] = [_label_value(t, task, where) for t in tags]
    return row


def _extraction_row(row: dict[str, Any], task: TaskSpec) -> dict[str, Any]:
    output, where = row["output"], row[WHERE]
    if isinstance(output, str):
        try:
            output = json.loads(output) if output.strip() else {}
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{where}: 'output' is not valid JSON: {exc.msg}",
                hint='extraction outputs are JSON objects, e.g. {"drug": "aspirin"}',
            ) from None
    if not isinstance(output, dict):
        raise DataError(f"{where}: 'output' must be a JSON object, got {type(output).__name__}")
    row["output"] = output
    row["text"] = _text_value(row["text"], "text", where)
    return row
