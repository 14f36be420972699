"""`lora-adapt predict SOURCE --input FILE | --text TEXT`: run one adapter on new inputs.

The adapter is loaded through :class:`AdapterSet` (one member), so `predict` answers exactly as the server
does, and each input is read and prompted as the adapter was trained (``tasks.py``). Input files are read
by the data module's readers (jsonl, json, csv, tsv, parquet, txt, ...) with the run's ``data.columns``
mapping; every output row is the input row plus ``prediction``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .. import artifacts as A
from ..data.sources import WHERE
from ..errors import DataError
from ..recipe.serving import GenerationSpec
from .adapter_set import AdapterSet
from .tasks import DEFAULT_TOP_K

BAR_FROM = 32
"""Inputs from which a progress bar (or, off a terminal, a progress line per tenth) is shown."""


def read_inputs(path: Path, columns: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Rows of an input file, renamed by ``columns`` (canonical name -> your column), each with ``_where``."""
    from ..data.formats import rename_columns
    from ..data.sources import check_exists, detect_file_format, read_file
    from ..recipe.schema import DataSpec

    check_exists(path, "--input")
    rows = read_file(path, detect_file_format(path, "sft"))
    if not rows:
        raise DataError(f"{path} holds no inputs", hint="one input per line (jsonl) or per row")
    spec = DataSpec.model_construct(columns=dict(columns or {}))
    return rename_columns(rows, spec, str(path))


def predict_rows(
    aset: AdapterSet,
    name: str,
    rows: Sequence[dict[str, Any] | str],
    *,
    generation: GenerationSpec | None = None,
    batch_size: int = 16,
    top_k: int = DEFAULT_TOP_K,
    echo: Callable[[str], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """``{**row, "prediction": {...}}`` for each row, in order, ``batch_size`` rows per forward."""
    generation = generation or GenerationSpec()
    with _progress(len(rows), echo) as advance:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            results = aset.run([(name, row) for row in chunk], generation, top_k=top_k)
            for row, result in zip(chunk, results, strict=True):
                result.pop("adapter", None)
                yield {**_plain(row), "prediction": result}
            advance(len(chunk))


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as JSON lines to ``path`` atomically (nothing half-written is left; the umask applies)."""
    return A.atomic_write_chunks(path, (json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _plain(row: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(row, str):
        return {"text": row}
    return {k: v for k, v in row.items() if k != WHERE}


class _progress:
    """A tqdm bar on a terminal; elsewhere one line per tenth of the inputs (only for long inputs)."""

    def __init__(self, total: int, echo: Callable[[str], None] | None):
        self.total, self.echo, self.done, self.bar, self.next_line = total, echo, 0, None, total / 10

    def __enter__(self) -> Callable[[int], None]:
        if self.total >= BAR_FROM and self.echo is not None and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc="predicting", unit="input", leave=False)
        return self.advance

    def advance(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.echo is not None and self.total >= BAR_FROM and self.done >= self.next_line:
            self.echo(f"predicted {self.done}/{self.total}")
            self.next_line += self.total / 10

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
