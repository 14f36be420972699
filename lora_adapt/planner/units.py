"""Memory sizes as people write them (`24GiB`, `24GB`, `24000MiB`) and as the report prints them."""

from __future__ import annotations

import re

from ..errors import UsageError

_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")
GIB = 2**30


def parse_size(text: str) -> int:
    """`24GiB` -> 25769803776; `24GB` -> 24000000000; `24000MiB` -> 25165824000 bytes."""
    match = _SIZE.match(text or "")
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise UsageError(
            f"cannot read memory size {text!r}",
            hint="write a number and a unit, e.g. 24GiB, 24GB, 80GiB or 24000MiB",
        )
    size = float(match.group(1)) * _UNITS[unit]
    if size <= 0:
        raise UsageError(f"memory size must be positive, got {text!r}", hint="e.g. --gpu-memory 24GiB")
    return int(size)


def format_gib(n: int | float) -> str:
    return f"{n / GIB:.2f}"
