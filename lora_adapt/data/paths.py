"""Column paths into nested fields: ``relation[0].relation_type``, ``meta.source``, ``entities[1].start``.

``data.columns`` (and ``task.targets``) may name a field inside a JSON object or list instead of a
top-level column. A path is a top-level column followed by ``.key`` and ``[index]`` steps; a name
that is itself a column (even one containing a dot) is always taken as that column.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import DataError

STEP = re.compile(r"\[(-?\d+)\]|\.([^.\[\]]+)")
HEAD = re.compile(r"^[^.\[\]]+")


def is_path(name: str) -> bool:
    return "." in name or "[" in name


def parse_path(path: str) -> list[str | int]:
    """``relation[0].relation_type`` -> ``["relation", 0, "relation_type"]`` (ValueError when malformed)."""
    head = HEAD.match(path)
    if head is None:
        raise ValueError(f"{path!r} does not start with a column name")
    steps: list[str | int] = [head.group(0)]
    rest = path[head.end() :]
    while rest:
        step = STEP.match(rest)
        if step is None:
            raise ValueError(f"cannot read {rest!r} in {path!r}: use `.key` or `[index]` steps")
        steps.append(int(step.group(1)) if step.group(1) is not None else step.group(2))
        rest = rest[step.end() :]
    return steps


def lookup(row: dict[str, Any], path: str, where: str, origin: str) -> Any:
    """The value at ``path`` in ``row``; a DataError naming the row, the path and the failing step.

    ``origin`` says which recipe key the path came from (``data.columns.label``)."""
    if path in row:
        return row[path]
    try:
        steps = parse_path(path)
    except ValueError as exc:
        raise DataError(
            f"{origin}: {exc}", hint="e.g. `relation[0].relation_type` or `meta.source`"
        ) from None
    value: Any = row
    walked = ""
    for step in steps:
        value, walked = _step(value, step, walked, where, origin, path)
    return value


def _step(value: Any, step: str | int, walked: str, where: str, origin: str, path: str) -> tuple[Any, str]:
    here = f"{walked}[{step}]" if isinstance(step, int) else (f"{walked}.{step}" if walked else step)
    if isinstance(step, int):
        if not isinstance(value, list):
            raise _missing(where, origin, path, f"{walked or 'the row'} is {_kind(value)}, not a list")
        if not -len(value) <= step < len(value):
            raise _missing(where, origin, path, f"{walked} has {len(value)} item(s), no [{step}]")
        return value[step], here
    if not isinstance(value, dict):
        raise _missing(where, origin, path, f"{walked or 'the row'} is {_kind(value)}, not an object")
    if step not in value:
        keys = ", ".join(k for k in value if not k.startswith("_")) or "none"
        raise _missing(where, origin, path, f"{walked or 'the row'} has no key {step!r} (keys: {keys})")
    return value[step], here


def _missing(where: str, origin: str, path: str, why: str) -> DataError:
    return DataError(
        f"{where}: {origin} = {path!r} cannot be read here: {why}",
        hint="fix the path in the recipe, or fix/remove the row",
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return f"a {type(value).__name__} ({str(value)[:30]!r})"


def describe_value(value: Any) -> str:
    """A short description of a value's type, for type-check errors (``a list of 2 objects``)."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return f"a list of {len(value)} object(s)"
    return _kind(value)
