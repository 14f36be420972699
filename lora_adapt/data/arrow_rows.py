"""Rows and token columns on disk as Arrow files, read memory-mapped.

``RowWriter`` appends canonical rows as JSON text (an exact round trip for the JSON values that readers
produce) to one Arrow stream file; ``RowStore`` is a read-only sequence of dicts over such a file and a
selection of its row numbers (a split), with ``_where`` stripped unless asked for. ``ColumnWriter``
appends tokenized batches with the features ``datasets.Dataset.from_dict`` would give them, so a split
written batch by batch equals the one built from the whole column lists.

Both write record batches of about ``RECORD_BATCH_BYTES``, not one per batch they are given: reading a
memory-mapped file touches each record batch's header, and the kernel maps the pages around every page
touched (fault-around, 64 KiB), which then count in the process's resident memory for as long as the file
is open. At one small batch per 1,000 rows that was about 100 MiB for a million rows, mapped again by each
reader of the same files (a cached rerun, and the entry read back after a first run). A record batch is
held in memory while it is gathered, and read whole by ``RowStore``: its size trades that fixed memory
against the pages that grow with the rows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .sources import WHERE, loads

BATCH = 4096
RECORD_BATCH_BYTES = 4 << 20


class RowWriter:
    """Rows as JSON text in one Arrow file (column ``row``); ``close()`` returns the memory-mapped dataset."""

    def __init__(self, path: Path):
        import pyarrow as pa

        self.path, self.count = path, 0
        self._pending: list[str] = []
        self._arrays: list = []  # the next record batch's rows, converted BATCH at a time
        self._bytes = 0
        self._schema = pa.schema([("row", pa.string())])
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_stream(self._sink, self._schema)

    def add(self, text: str) -> int:
        """Append a row's JSON text; its row number."""
        self._pending.append(text)
        if len(self._pending) >= BATCH:
            self._convert()
        self.count += 1
        return self.count - 1

    def _convert(self) -> None:
        import pyarrow as pa

        if self._pending:
            self._arrays.append(pa.array(self._pending, pa.string()))
            self._bytes += self._arrays[-1].nbytes
            self._pending = []
        if self._bytes >= RECORD_BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._arrays:
            rows = pa.concat_arrays(self._arrays)
            self._writer.write_batch(pa.record_batch([rows], schema=self._schema))
            self._arrays, self._bytes = [], 0

    def close(self):
        import datasets

        self._convert()
        self._flush()
        self._writer.close()
        self._sink.close()
        return datasets.Dataset.from_file(str(self.path))


class RowStore(Sequence):
    """The rows of one split: a memory-mapped Arrow column of JSON text and the row numbers it keeps."""

    def __init__(self, dataset, indices: Sequence[int] | np.ndarray | None = None, *, where: bool = False):
        self.dataset = dataset
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self._where = where

    def __len__(self) -> int:
        return len(self.dataset) if self.indices is None else len(self.indices)

    def _load(self, text: str) -> dict[str, Any]:
        row = loads(text)
        if not self._where:
            row.pop(WHERE, None)
        return row

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        at = int(index if self.indices is None else self.indices[index])
        return self._load(self.dataset._data.column("row")[at].as_py())

    def texts(self, batch: int = BATCH) -> Iterator[list[str]]:
        """The rows' JSON text in batches, in split order. A split whose rows keep the file's order (every
        split preparation makes) is read with plain reads, batch by batch, so that a pass over it leaves no
        mapped pages behind (they would count in the process's resident memory)."""
        files = self.dataset.cache_files
        if len(files) == 1 and (self.indices is None or bool(np.all(np.diff(self.indices) > 0))):
            yield from self._read_in_order(files[0]["filename"], batch)
            return
        column = self.dataset._data.column("row")
        total = len(self)
        for start in range(0, total, batch):
            if self.indices is None:
                yield column.slice(start, batch).to_pylist()
            else:
                yield column.take(self.indices[start : start + batch]).to_pylist()

    def _read_in_order(self, path: str, batch: int) -> Iterator[list[str]]:
        import pyarrow as pa

        offset, at = 0, 0
        with pa.OSFile(path) as source:
            for record in pa.ipc.open_stream(source):
                rows, column = record.num_rows, record.column(0)
                if self.indices is None:
                    for start in range(0, rows, batch):
                        yield column.slice(start, batch).to_pylist()
                else:  # taken a batch at a time: a record batch's picked rows are never copied whole
                    end = int(np.searchsorted(self.indices, offset + rows, side="left"))
                    for start in range(at, end, batch):
                        yield column.take(
                            pa.array(self.indices[start : min(start + batch, end)] - offset)
                        ).to_pylist()
                    at = end
                offset += rows
                if self.indices is not None and at >= len(self.indices):
                    return

    def batches(self, batch: int = BATCH) -> Iterator[list[dict[str, Any]]]:
        for texts in self.texts(batch):
            yield [self._load(text) for text in texts]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for rows in self.batches():
            yield from rows

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    def without_where(self) -> RowStore:
        return RowStore(self.dataset, self.indices, where=False)


class ColumnWriter:
    """Tokenized batches appended to one Arrow file, typed as ``datasets.Dataset.from_dict`` types them.
    Batches are kept as Arrow arrays until they hold ``RECORD_BATCH_BYTES``, then written as one record
    batch."""

    def __init__(self, path: Path):
        self.path, self.rows = path, 0
        self._writer: Any = None
        self._types: Any = None  # the file's Arrow schema (Python lists are converted to it)
        self._pending: list[dict[str, Any]] = []
        self._bytes = 0

    def add(self, columns: dict[str, Any]) -> None:
        """Append a batch: Python lists, or Arrow arrays (cast to the types the first batch's values have
        as Python lists)."""
        import datasets
        import pyarrow as pa
        from datasets.arrow_writer import ArrowWriter

        if not columns or not len(next(iter(columns.values()))):
            return
        if self._writer is None:
            values = {name: getattr(v, "to_pylist", lambda v=v: v)() for name, v in columns.items()}
            features = datasets.Dataset.from_dict(values).features
            # a native file: a record batch is written from its buffers, not copied into Python bytes
            self._writer = ArrowWriter(features=features, stream=pa.OSFile(str(self.path), "wb"))
            self._types = features.arrow_schema
        arrays = {
            name: v if isinstance(v, pa.Array) else pa.array(v, self._types.field(name).type)
            for name, v in columns.items()
        }
        self._pending.append(arrays)
        self._bytes += sum(array.nbytes for array in arrays.values())
        self.rows += len(next(iter(columns.values())))
        if self._bytes >= RECORD_BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if not self._pending:
            return
        columns = {
            name: pa.concat_arrays([batch[name] for batch in self._pending]) for name in self._pending[0]
        }
        self._writer.write_batch(columns, writer_batch_size=len(next(iter(columns.values()))))
        self._pending, self._bytes = [], 0

    def close(self):
        """The memory-mapped dataset, or None when no row was written."""
        import datasets

        if self._writer is None:
            return None
        self._flush()
        self._writer.finalize()
        self._writer.close()
        return datasets.Dataset.from_file(str(self.path))
