"""A content-addressed cache of prepared data: `prepared(spec, task, tokenizer, head=...)` returns the
`PreparedData` of `prepare_data`, built once and then read back memory-mapped.

The key is a sha256 over everything that decides the result: the data files' sha256 (and paths), the
tokenizer's saved files, every `data` and `task` setting, head or generative mode, the source of this
package's data stage and the versions of datasets / tokenizers / transformers. A changed input or setting
is a different key (a miss); nothing is ever invalidated in place.

An entry is a folder `<root>/<key>/`: the tokenized splits and the cleaned rows as Arrow files
(`datasets.Dataset.save_to_disk`), and `meta.json` with the layout, labels, stats and an xxh3 checksum of
every file. It is built under a temporary name and renamed into place, so a reader sees a whole entry or
none, and concurrent writers of one key both succeed (the first rename wins). Readers check the
checksums; an entry that fails them is moved aside and rebuilt, never trusted. Entries never change once
written, so any number of processes may read one at a time (distributed training: the main process
prepares first, the others then read its entry; ``Ranks.main_first``).

Root: `$LORA_ADAPT_DATA_CACHE`, else `$XDG_CACHE_HOME/lora-adapt/data`, else `~/.cache/lora-adapt/data`.
TRL's own `map` over a memory-mapped split writes its cache files beside that split (datasets' behaviour);
they are not part of the entry's checksums."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..recipe.schema import DataSpec, TaskSpec
from .preparation import SPLITS, PreparedData, prepare_data
from .sources import check_exists, file_sha256

CACHE_ENV = "LORA_ADAPT_DATA_CACHE"
FORMAT = 1  # bump when the entry layout changes
META = "meta.json"


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "lora-adapt" / "data"


def prepared(
    spec: DataSpec,
    task: TaskSpec,
    tokenizer,
    *,
    head: bool,
    root: Path | None = None,
    build: bool = True,
    echo=None,
) -> PreparedData | None:
    """The prepared data for the recipe's data, from the cache when an intact entry has its key, else
    prepared now and stored (`build=False`: None instead of preparing)."""
    if not spec.cache:
        return prepare_data(spec, task, tokenizer, head=head) if build else None
    inputs = key_inputs(spec, task, tokenizer, head=head)
    if inputs is None:  # a data file is missing: prepare_data raises the error that names it
        return prepare_data(spec, task, tokenizer, head=head)
    folder = (root or cache_root()) / entry_key(inputs)
    found = read_entry(folder)
    if found is not None:
        _say(echo, f"data: prepared data from the cache ({folder})")
        return found
    if not build:
        return None
    data = prepare_data(spec, task, tokenizer, head=head)
    try:
        write_entry(folder, data, inputs)
    except (OSError, TypeError, ValueError) as exc:  # a full disk or rows JSON cannot hold: run uncached
        _say(echo, f"warning: prepared data not cached ({type(exc).__name__}: {exc})")
        return data
    _say(echo, f"data: prepared data cached in {folder}")
    return read_entry(folder) or data


def _say(echo, text: str) -> None:
    if echo is not None:
        echo(text)


# --- the key ------------------------------------------------------------------------------------


def key_inputs(spec: DataSpec, task: TaskSpec, tokenizer, *, head: bool) -> dict[str, Any] | None:
    files = {}
    for name in ("path", "train", "validation", "test"):
        path = getattr(spec, name)
        if path is None:
            continue
        if not Path(path).exists():
            return None
        check_exists(Path(path), f"data.{name}")  # a FIFO or a device is refused before it is opened
        files[name] = {"path": str(path), "sha256": file_sha256(Path(path))}
    for index, source in enumerate(spec.sources or ()):  # data.sources: each mixed file counts alike
        if not Path(source.path).exists():
            return None
        files[f"sources[{index}]"] = {"path": str(source.path), "sha256": file_sha256(Path(source.path))}
    return {
        "format": FORMAT,
        "files": files,
        "data": spec.model_dump(mode="json", exclude={"cache"}),
        "task": task.model_dump(mode="json"),
        "head": head,
        "tokenizer": tokenizer_files_sha256(tokenizer),
        "code": data_code_sha256(),
        "versions": _versions(),
    }


def entry_key(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:40]


def tokenizer_files_sha256(tokenizer) -> str:
    """sha256 of the files the tokenizer saves (vocabulary, merges, special tokens, chat template)."""
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix="lora-adapt-tok-") as tmp:
        tokenizer.save_pretrained(tmp)
        for file in sorted(Path(tmp).rglob("*")):
            if file.is_file():
                digest.update(file.name.encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()


def data_code_files() -> list[Path]:
    """The source the prepared data depends on: the data stage, and the task rules it reads from
    recipe/derived.py (regression targets and their scaling)."""
    package = Path(__file__).resolve().parents[1]
    return [*sorted(Path(__file__).parent.glob("*.py")), package / "recipe" / "derived.py"]


def data_code_sha256() -> str:
    """sha256 of the data stage's source (``data_code_files``): changed preparation code is a new key."""
    digest = hashlib.sha256()
    for file in data_code_files():
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("datasets", "tokenizers", "transformers"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:  # pragma: no cover
            out[package] = "absent"
    return out


# --- entries ------------------------------------------------------------------------------------


def write_entry(folder: Path, data: PreparedData, inputs: dict[str, Any]) -> None:
    """Write `data` under a temporary name beside `folder`, then rename it into place (atomic)."""
    import datasets

    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = folder.parent / f".{folder.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        empty: dict[str, Any] = {}  # Arrow cannot save (or load) a dataset of no rows: note its columns
        for name in SPLITS:
            split = getattr(data, name)
            if split is not None and len(split) == 0:
                empty[name] = split.features.to_dict()
            elif split is not None:
                split.save_to_disk(str(stage / "tokenized" / name))
            rows = data.raw.get(name) or []
            if rows:
                column = [json.dumps(row, ensure_ascii=False, sort_keys=False) for row in rows]
                datasets.Dataset.from_dict({"row": column}).save_to_disk(str(stage / "rows" / name))
        meta = {
            "inputs": inputs,
            "layout": data.layout,
            "labels": list(data.labels) if data.labels is not None else None,
            "stats": data.stats,
            "empty_tokenized": empty,
            "checksums": {
                str(p.relative_to(stage)): _xxh3(p) for p in sorted(stage.rglob("*")) if p.is_file()
            },
        }
        (stage / META).write_text(json.dumps(meta, default=str), encoding="utf-8")
        try:
            stage.rename(folder)
        except OSError:  # another writer renamed the same key first: keep theirs
            if not (folder / META).is_file():
                raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def read_entry(folder: Path) -> PreparedData | None:
    """The entry at `folder`, or None when there is none; a damaged entry is moved aside (then deleted)."""
    import datasets

    if not (folder / META).is_file():
        return None
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        if any(_xxh3(folder / rel) != digest for rel, digest in meta["checksums"].items()):
            raise ValueError("checksum mismatch")
        empty = meta.get("empty_tokenized", {})
        splits = {
            name: datasets.load_from_disk(str(folder / "tokenized" / name))
            if (folder / "tokenized" / name).is_dir()
            else _empty_split(empty[name])
            if name in empty
            else None
            for name in SPLITS
        }
        raw = {
            name: CachedRows(datasets.load_from_disk(str(folder / "rows" / name)))
            if (folder / "rows" / name).is_dir()
            else []
            for name in SPLITS
        }
    except (OSError, ValueError, KeyError, TypeError):
        discard(folder)
        return None
    return PreparedData(
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
        raw=raw,  # type: ignore[arg-type]
        layout=meta["layout"],
        labels=tuple(meta["labels"]) if meta["labels"] is not None else None,
        stats=meta["stats"],
    )


def _empty_split(features: dict):
    import datasets

    features = datasets.Features.from_dict(features)
    return datasets.Dataset.from_dict({column: [] for column in features}, features=features)


def discard(folder: Path) -> None:
    aside = folder.parent / f".{folder.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.corrupt"
    try:
        folder.rename(aside)
    except OSError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def _xxh3(path: Path) -> str:
    import xxhash

    digest = xxhash.xxh3_64()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


class CachedRows(Sequence):
    """The cleaned rows of one split, read from a memory-mapped Arrow column of JSON (exact round trip)."""

    def __init__(self, dataset):
        self._rows = dataset

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return json.loads(self._rows[index]["row"])

    def __iter__(self) -> Iterator[dict]:
        for batch in self._rows.iter(batch_size=1024):
            yield from (json.loads(text) for text in batch["row"])

    def __eq__(self, other) -> bool:
        return list(self) == list(other)
