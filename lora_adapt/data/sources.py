"""Readers: one file (or saved ``datasets`` directory) -> a list of row dicts.

Every row carries ``_where`` ("file:line" or "file[item N]") so later checks can name the place a
bad example came from; the key is stripped before rows leave the package.

JSON (``.json``): a list of objects, ``{"data": [...]}``, ``{id: {fields}}`` (the key becomes
``id``), or JSON lines. Plain text (``.txt``, ``file_format: text``): a file with blank lines holds one example per
blank-line-separated block; a file without any blank line holds one example per line. Rows get
the column ``text``; with ``data.label_delimiter`` each line is ``<sentence><delimiter><label>``, split on
the last delimiter into ``text`` and ``label``.

``file_format: auto`` picks the reader by content where the extension can mislead: a token-per-line file
(blank-line-separated sentences of 2-4 whitespace-separated columns) is CoNLL whatever its name
(``.tsv``, ``.txt``, ``.csv`` or none), and a SemEval-2010 Task 8 file is recognised by its first line.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError

WHERE = "_where"
SEMEVAL_LINE = re.compile(r'^(\d+)\t"(.*)"\s*$')
EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".conll": "conll",
    ".bio": "conll",
    ".iob": "conll",
}


def file_sha256(path: Path) -> str:
    """sha256 of a file, or of a directory's files (sorted by relative path)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def check_exists(path: Path, origin: str) -> None:
    """``origin`` says where the path came from (``data.train``, ``--data``). Only regular files and
    folders are read: a FIFO or a device would block the run forever (or never end)."""
    if not path.exists():
        raise DataError(
            f"data file not found: {path} ({origin})",
            hint="relative paths resolve against the recipe file's folder; check the path and spelling",
        )
    if not (path.is_file() or path.is_dir()):
        kind = (
            "a FIFO (named pipe)"
            if path.is_fifo()
            else "a device"
            if path.is_char_device() or path.is_block_device()
            else "a socket"
            if path.is_socket()
            else "not a regular file"
        )
        raise DataError(
            f"{path} ({origin}) is {kind}, not a regular file",
            hint="write the data to a file first (e.g. `cat SOURCE > data.jsonl`) and point the recipe at it",
        )


SNIFFED = ("tsv", "csv", None)
"""Extensions whose content is checked for CoNLL / SemEval layouts before the extension is trusted."""
CONLL_COLUMNS = range(2, 5)


def detect_file_format(path: Path, task_type: str) -> str:
    """The reader for ``file_format: auto``: CoNLL and SemEval files by content, else by extension, sniffing
    .txt and extension-less files."""
    if path.is_dir():
        return "hf_dataset"
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt in SNIFFED or path.suffix.lower() == ".txt":
        if looks_like_conll(_sample_lines(path, 60)):
            return "conll"
    if fmt is not None:
        return fmt
    lines = _first_lines(path, 20)
    if lines and SEMEVAL_LINE.match(lines[0]):
        return "semeval"
    if path.suffix.lower() == ".txt":
        return "text"
    if lines and lines[0].lstrip().startswith("{"):
        return "jsonl"
    if lines and "\t" in lines[0]:
        return "tsv"
    if lines and "," in lines[0]:
        return "csv"
    return "text"


def looks_like_conll(lines: list[str]) -> bool:
    """Token-per-line sentences: at least two blank-line-separated blocks, every line 2-4 whitespace-separated
    columns, the same number on every line."""
    content = [line for line in lines if line.strip() and not line.startswith("-DOCSTART-")]
    if len(content) < 2:
        return False
    widths = {len(line.split()) for line in content}
    if len(widths) != 1 or next(iter(widths)) not in CONLL_COLUMNS:
        return False
    first = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("-DOCSTART-"))
    last = max(i for i, line in enumerate(lines) if line.strip())
    return any(not line.strip() for line in lines[first:last])


def _sample_lines(path: Path, n: int) -> list[str]:
    """The first ``n`` lines, blank ones kept (they separate CoNLL sentences)."""
    out: list[str] = []
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        for line in handle:
            out.append(line.rstrip("\r\n"))
            if len(out) >= n:
                break
    return out


def _first_lines(path: Path, n: int) -> list[str]:
    out: list[str] = []
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        for line in handle:
            if line.strip() and not line.startswith("-DOCSTART-"):
                out.append(line.rstrip("\r\n"))
            if len(out) >= n:
                break
    return out


def read_file(
    path: Path,
    fmt: str,
    column_names: tuple[str, ...] | None = None,
    *,
    short_rows: str = "error",
    label_delimiter: str | None = None,
) -> list[dict[str, Any]]:
    """Rows of one file in its own column names (each with ``_where``).

    ``short_rows`` (csv/tsv): ``error`` or ``pad``; ``label_delimiter``: read a text file as sentence + label."""
    return list(iter_file(path, fmt, column_names, short_rows=short_rows, label_delimiter=label_delimiter))


def iter_file(
    path: Path,
    fmt: str,
    column_names: tuple[str, ...] | None = None,
    *,
    short_rows: str = "error",
    label_delimiter: str | None = None,
) -> Iterator[dict[str, Any]]:
    """``read_file``'s rows one at a time: JSON lines and csv/tsv are streamed (never all in memory)."""
    readers = {
        "jsonl": _read_jsonl,
        "json": _read_json,
        "parquet": _read_parquet,
        "text": _read_text,
        "conll": _read_conll,
        "semeval": _read_semeval,
        "hf_dataset": _read_saved_dataset,
    }
    if label_delimiter is not None and fmt != "text":
        raise DataError(
            f"{path}: data.label_delimiter reads one-example-per-line text files, but this file reads as {fmt}",
            hint="set data.file_format: text, or remove data.label_delimiter and map columns instead",
        )
    if fmt not in ("parquet", "hf_dataset"):
        _check_utf16(path)
    try:
        if fmt in ("csv", "tsv"):
            yield from _read_delimited(path, "\t" if fmt == "tsv" else ",", column_names, short_rows)
        elif fmt == "text" and label_delimiter is not None:
            yield from _read_labelled_lines(path, label_delimiter)
        else:
            yield from readers[fmt](path)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})",
            hint=f"convert the file to UTF-8, e.g. `iconv -f latin1 -t utf-8 {path} > {path.stem}.utf8{path.suffix}` "
            "(latin1 for Western European text; name the encoding the file was written in)",
        ) from None


UTF16_BOMS = {b"\xff\xfe": "UTF-16LE", b"\xfe\xff": "UTF-16BE"}


def _check_utf16(path: Path) -> None:
    """UTF-16 text (Windows tools write it) is not UTF-8: say so, with the conversion, before parsing."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    encoding = next((name for bom, name in UTF16_BOMS.items() if head.startswith(bom)), None)
    if encoding is None and head.count(b"\x00") > len(head) // 4:  # ASCII text in UTF-16: every other byte 0
        encoding = "UTF-16LE" if head[1:2] == b"\x00" else "UTF-16BE"
    if encoding is not None:
        raise DataError(
            f"{path}: {encoding} text, not UTF-8",
            hint=f"convert it: `iconv -f UTF-16 -t UTF-8 {path} > {path.stem}.utf8{path.suffix}`, then point the recipe at the new file",
        )


_SCAN = json.JSONDecoder().scan_once  # json.loads's own C scanner, without its two wrappers


def loads(text: str) -> Any:
    """``json.loads(text)``, the same value or the same error, at about 60% of its cost on short rows (it
    reads every row of a JSON-lines file, and every prepared row again)."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:  # leading whitespace or not JSON: the full decoder says which
        return json.loads(text)
    if end != len(text) and text[end:].strip(" \t\n\r"):
        return json.loads(text)  # raises its "Extra data" error
    return value


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    where = f"{path}:"
    with path.open(encoding="utf-8-sig") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                obj = loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path}:{lineno}: not valid JSON: {exc.msg} (column {exc.colno})",
                    hint="each line of a .jsonl file must be one JSON object",
                ) from None
            if not isinstance(obj, dict):
                raise DataError(
                    f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}",
                    hint='each line of a .jsonl file must be one JSON object like {"text": ...}',
                )
            obj[WHERE] = where + str(lineno)
            yield obj


def _read_json(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8-sig")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # a .json file holding JSON lines
            return list(_read_jsonl(path))
        raise DataError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    elif isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        data = [{"id": key, **value} for key, value in data.items()]  # {id: {fields}} (e.g. PubMedQA)
    if not isinstance(data, list):
        raise DataError(
            f'{path}: expected a JSON list of objects, {{"data": [...]}} or {{id: {{...}}}}, '
            f"got {type(data).__name__}"
        )
    rows = []
    for i, obj in enumerate(data):
        if not isinstance(obj, dict):
            raise DataError(f"{path}[item {i}]: expected a JSON object, got {type(obj).__name__}")
        rows.append({**obj, WHERE: f"{path}[item {i}]"})
    return rows


def _read_delimited(
    path: Path, delimiter: str, column_names: tuple[str, ...] | None, short_rows: str = "error"
) -> Iterator[dict[str, Any]]:
    """csv/tsv. tsv is read without quoting (quote characters are data); headerless files need column_names."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open(encoding="utf-8-sig", newline="") as handle:
        if delimiter == "\t":
            reader = csv.reader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE)
        else:
            reader = csv.reader(handle, delimiter=delimiter)
        header = list(column_names) if column_names else next(reader, None)
        if header is None:
            return
        for fields in reader:
            if not any(f.strip() for f in fields) or (
                column_names and reader.line_num == 1 and fields == header
            ):
                continue  # blank line, or a header line equal to data.column_names
            yield _fields_to_row(path, reader.line_num, header, fields, delimiter, short_rows)


def _fields_to_row(
    path: Path, lineno: int, header: list[str], fields: list[str], delimiter: str, short_rows: str = "error"
) -> dict[str, Any]:
    if len(fields) > len(header):  # extra delimiters belong to the last column (free text)
        fields = fields[: len(header) - 1] + [delimiter.join(fields[len(header) - 1 :])]
    if len(fields) < len(header) and short_rows == "pad":
        fields = fields + [""] * (len(header) - len(fields))
    if len(fields) < len(header):
        raise DataError(
            f"{path}:{lineno}: {len(fields)} field(s) but {len(header)} columns {header}",
            hint="for a headerless file set data.column_names; check the delimiter (data.file_format csv or "
            "tsv); for a ragged file whose rows may lack trailing columns set data.short_rows: pad",
        )
    row: dict[str, Any] = dict(zip(header, fields, strict=True))
    row[WHERE] = f"{path}:{lineno}"
    return row


PARQUET_BATCH = 8192  # rows decoded at a time: a large file is never held whole as Python rows


def _read_parquet(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    def bad(exc: Exception) -> DataError:
        return DataError(f"{path}: not a readable parquet file: {exc}")

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise bad(exc) from None
    number = 0
    while True:
        try:
            batch = next(batches, None)
        except Exception as exc:  # a damaged row group further on
            raise bad(exc) from None
        if batch is None:
            return
        for row in batch.to_pylist():
            yield {**row, WHERE: f"{path}[row {number}]"}
            number += 1


def _lines(path: Path) -> Iterator[str]:
    """The file's lines as ``str.splitlines`` gives them (the same numbering), read one at a time."""
    with path.open(encoding="utf-8-sig") as handle:
        for physical in handle:
            yield from physical.splitlines()


def _read_text(path: Path) -> Iterator[dict[str, Any]]:
    """One example per line; or, when the file has blank lines, one per block of lines between them. The
    file is read twice (is there a blank line? then the examples), never held whole."""
    if not any(not line.strip() for line in _lines(path)):
        for i, line in enumerate(_lines(path), 1):
            yield {"text": line, WHERE: f"{path}:{i}"}
        return
    block: list[str] = []
    first = 0
    for lineno, line in enumerate(_with_end(_lines(path)), 1):
        if line.strip():
            first = first or lineno
            block.append(line)
        elif block:
            yield {"text": "\n".join(block), WHERE: f"{path}:{first}"}
            block, first = [], 0


def _with_end(lines: Iterator[str]) -> Iterator[str]:
    yield from lines
    yield ""  # closes the last block


def _read_labelled_lines(path: Path, delimiter: str) -> Iterator[dict[str, Any]]:
    """``<sentence><delimiter><label>`` per line, split on the last delimiter (the sentence may contain it)."""
    for lineno, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        text, sep, label = line.rpartition(delimiter)
        if not sep:
            raise DataError(
                f"{path}:{lineno}: no {delimiter!r} in this line (data.label_delimiter): {line[:60]!r}",
                hint="every line must end with the delimiter and its label; fix or remove the line",
            )
        yield {"text": text, "label": label.strip(), WHERE: f"{path}:{lineno}"}


def _read_conll(path: Path) -> Iterator[dict[str, Any]]:
    """Token per line, first column the token, last column the tag; blank lines end sentences (streamed: one
    sentence at a time)."""
    tokens: list[str] = []
    tags: list[str] = []
    first = 0
    with path.open(encoding="utf-8-sig") as handle:
        for lineno, line in enumerate(handle, 1):
            parts = line.split()
            if parts and parts[0] == "-DOCSTART-":
                continue
            if not parts:
                if tokens:
                    yield {"tokens": tokens, "tags": tags, WHERE: f"{path}:{first}"}
                tokens, tags, first = [], [], 0
                continue
            if len(parts) < 2:
                raise DataError(
                    f"{path}:{lineno}: token without a tag: {line.strip()!r}",
                    hint="CoNLL lines are 'TOKEN [other columns] TAG', a blank line between sentences",
                )
            first = first or lineno
            tokens.append(parts[0])
            tags.append(parts[-1])
    if tokens:
        yield {"tokens": tokens, "tags": tags, WHERE: f"{path}:{first}"}


def _read_semeval(path: Path) -> list[dict[str, Any]]:
    """SemEval-2010 Task 8: `id<TAB>"sentence"`, label line, `Comment:` line, blank line."""
    rows: list[dict[str, Any]] = []
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        match = SEMEVAL_LINE.match(lines[i])
        if match is None:
            raise DataError(
                f"{path}:{i + 1}: expected a SemEval line 'ID<TAB>\"sentence\"', got {lines[i][:60]!r}"
            )
        if i + 1 >= len(lines) or not lines[i + 1].strip():
            raise DataError(f"{path}:{i + 2}: missing the relation label line after example {match.group(1)}")
        rows.append(
            {
                "id": match.group(1),
                "text": match.group(2),
                "label": lines[i + 1].strip(),
                WHERE: f"{path}:{i + 1}",
            }
        )
        i += 2
        if i < len(lines) and lines[i].startswith("Comment"):
            i += 1
    return rows


def _read_saved_dataset(path: Path) -> SavedSplit:
    splits = read_saved_splits(path)
    if len(splits) != 1:
        raise DataError(
            f"{path}: saved DatasetDict has splits {sorted(splits)}; one file needs one split",
            hint="point data.path at the DatasetDict to use its splits, or save the split you want alone",
        )
    return next(iter(splits.values()))


class SavedSplit:
    """A saved split's rows, decoded one at a time from its memory-mapped Arrow files (each with ``_where``)."""

    def __init__(self, dataset, where: str):
        self.dataset, self.where = dataset, where

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i, row in enumerate(self.dataset):
            yield {**row, WHERE: f"{self.where}[row {i}]"}


def read_saved_splits(path: Path) -> dict[str, SavedSplit]:
    """A directory written by ``save_to_disk``: {split: rows} (a plain Dataset is the split "train")."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError/ValueError variants
        raise DataError(
            f"{path}: not a saved `datasets` directory: {exc}",
            hint="write it with Dataset.save_to_disk(), or set data.file_format",
        ) from None
    parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    return {name: SavedSplit(ds, f"{path}/{name}") for name, ds in parts.items()}
