"""A content-addressed cache of prepared data: `prepared(spec, task, tokenizer, head=...)` returns the
`PreparedData` of `prepare_data`, built once and then read back memory-mapped.

The key is a sha256 over everything that decides the result: the data files' sha256 (and paths), the
tokenizer's saved files, every `data` and `task` setting, head or generative mode, the source of this
package's data stage and the versions of datasets / tokenizers / transformers. A changed input or setting
is a different key (a miss); nothing is ever invalidated in place.

An entry is a folder `<root>/<key>/` holding what `prepare_data` wrote there: the rows read, as JSON text
in one Arrow file (rows.arrow), each split's row numbers in it (indices/<split>.npy) and the tokenized
splits (tokenized/<split>.arrow), plus `meta.json` with the layout, labels, stats and an xxh3 checksum of
every file. It is prepared under a temporary name and renamed into place, so a reader sees a whole entry
or none, and concurrent writers of one key both succeed (the first rename wins). Readers check the
checksums; an entry that fails them is moved aside and rebuilt, never trusted. Entries never change once
written, so any number of processes may read one at a time (distributed training: the main process
prepares first, the others then read its entry; ``Ranks.main_first``).

Root: `$LORA_ADAPT_DATA_CACHE`, else `$XDG_CACHE_HOME/lora-adapt/data`, else `~/.cache/lora-adapt/data`.
TRL's own `map` over a memory-mapped split writes its cache files beside that split (datasets' behaviour);
they are not part of the entry's checksums."""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from ..artifacts import host_tag, remove_orphans, scratch_dir
from ..recipe.schema import DataSpec, TaskSpec
from .arrow_rows import RowStore
from .preparation import SPLITS, PreparedData, prepare_data
from .sources import check_exists, file_sha256

CACHE_ENV = "LORA_ADAPT_DATA_CACHE"
FORMAT = 2  # bump when the entry layout changes
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
    remove_stale_stages(folder)
    stage = _stage(folder)
    try:
        data = prepare_data(spec, task, tokenizer, head=head, folder=stage)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
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
    with scratch_dir("tok") as tmp:
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
    """Put `data`'s Arrow files (``prepare_data``'s folder: moved when it is this entry's stage, copied
    otherwise) and meta.json under a temporary name beside `folder`, then rename it into place (atomic)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    assert data.folder is not None, "prepared data without its Arrow folder"
    own = data.folder.parent == folder.parent and data.folder.name.startswith(f".{folder.name}.")
    stage = data.folder if own else _stage(folder)
    try:
        if not own:
            shutil.copytree(data.folder, stage)
        meta = {
            "inputs": inputs,
            "layout": data.layout,
            "labels": list(data.labels) if data.labels is not None else None,
            "stats": data.stats,
            "splits": {name: getattr(data, name) is not None for name in SPLITS},
            "checksums": {
                str(p.relative_to(stage)): _xxh3(p)
                for p in sorted(stage.rglob("*"))
                if p.is_file() and _entry_file(p.relative_to(stage))
            },
        }
        (stage / META).write_text(json.dumps(meta, default=str), encoding="utf-8")
        try:
            stage.rename(folder)
        except OSError:  # another writer renamed the same key first: keep theirs
            if not (folder / META).is_file():
                raise
    except BaseException:
        if own:  # `data` is read from these files: the run goes on uncached, they go when the process ends
            (stage / META).unlink(missing_ok=True)
            atexit.register(shutil.rmtree, stage, True)
            stage = None
        raise
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)


def _stage(folder: Path) -> Path:
    """A fresh temporary name beside `folder` (``prepared`` prepares into it), naming its process."""
    return folder.parent / f".{folder.name}.{host_tag()}-{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def remove_stale_stages(folder: Path) -> list[Path]:
    """Remove what killed processes left beside the entry `folder`: a half-prepared stage (``.tmp``, as big
    as the entry) or a damaged entry moved aside (``.corrupt``). A process killed mid-preparation runs no
    cleanup; stages of running processes and of other machines (a shared cache) are left."""
    pattern = re.compile(
        rf"^\.{re.escape(folder.name)}\.(?P<host>[0-9a-f]{{8}})-(?P<pid>\d+)\.[0-9a-f]{{8}}\.(?:tmp|corrupt)$"
    )
    return remove_orphans(folder.parent, pattern)


def _entry_file(relative: Path) -> bool:
    """The entry's own files (not the cache files that datasets' `map` writes beside a split)."""
    return relative.parts[0] in ("indices", "tokenized") or str(relative) == "rows.arrow"


def read_entry(folder: Path) -> PreparedData | None:
    """The entry at `folder`, or None when there is none; a damaged entry is moved aside (then deleted)."""
    import datasets
    import numpy as np

    if not (folder / META).is_file():
        return None
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        if any(_xxh3(folder / rel) != digest for rel, digest in meta["checksums"].items()):
            raise ValueError("checksum mismatch")
        splits = {
            name: datasets.Dataset.from_file(str(folder / "tokenized" / f"{name}.arrow")) if there else None
            for name, there in meta["splits"].items()
        }
        rows = datasets.Dataset.from_file(str(folder / "rows.arrow"))
        raw = {
            name: RowStore(rows, np.load(folder / "indices" / f"{name}.npy"))
            if (folder / "indices" / f"{name}.npy").is_file()
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
        folder=folder,
    )


def discard(folder: Path) -> None:
    aside = folder.parent / f".{folder.name}.{host_tag()}-{os.getpid()}.{uuid.uuid4().hex[:8]}.corrupt"
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
