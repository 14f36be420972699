"""From a DataSpec to cleaned, split, checked rows (no tokenizer) and on to trainer-ready datasets."""

from __future__ import annotations

import atexit
import gc
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..artifacts import scratch_dir, scratch_folder
from ..errors import DataError
from ..recipe.derived import target_names, target_scaling
from ..recipe.mixing import SourceSpec
from ..recipe.schema import DataSpec, TaskSpec
from . import cleaning, streaming
from .arrow_rows import ColumnWriter
from .formats import TASK_LAYOUTS, check_columns, is_pair, rename_columns, rows_layout, to_canonical
from .labels import (
    LABELLED,
    check_known,
    check_label_values,
    check_labels,
    label_counts,
    resolve_labels,
)
from .mixing import final_counts, mix
from .sources import (
    WHERE,
    check_exists,
    detect_file_format,
    file_sha256,
    iter_file,
    read_saved_splits,
)
from .splits import SPLIT_NAMES, sample_rows, split_by_ratio
from .streaming import Canonical, Collector
from .targets import head_scaling, target_stats
from .templates import resolve_chat_template
from .tokenization import SplitCounts, generative_layout, tokenize_generative, tokenize_head

if TYPE_CHECKING:
    import datasets

SPLITS = ("train", "validation", "test")
TOKENIZE_BATCH = 1000
Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class PreparedData:
    train: datasets.Dataset
    validation: datasets.Dataset | None
    test: datasets.Dataset | None
    raw: dict[str, list[dict]]
    layout: str
    labels: tuple[str, ...] | None
    stats: dict
    folder: Path | None = None  # the Arrow files the splits are read from (data/arrow_rows.py)


# --- reading -----------------------------------------------------------------------------------


def _read(path: Path, origin: str, spec: DataSpec, task: TaskSpec, stats: dict) -> Rows:
    return list(_open(path, origin, spec, task, stats))


def _canonical(
    rows: Rows, spec: DataSpec, task: TaskSpec, source: str, layout: str | None
) -> tuple[Rows, str]:
    rows = rename_columns(rows, spec, source)
    layout = layout or rows_layout(spec, task, rows[0] if rows else {})
    check_columns(rows, layout, spec, source)
    check_label_values(rows, layout, task)
    return to_canonical(rows, layout, task), layout


def _open(path: Path, origin: str, spec: DataSpec, task: TaskSpec, stats: dict) -> Iterator[dict[str, Any]]:
    """``_read``, streamed: the file's rows one at a time."""
    check_exists(path, origin)
    fmt = spec.file_format if spec.file_format != "auto" else detect_file_format(path, task.type)
    stats["files"][str(path)] = file_sha256(path)
    stats["file_formats"][str(path)] = fmt
    return iter_file(
        path, fmt, spec.column_names, short_rows=spec.short_rows, label_delimiter=spec.label_delimiter
    )


def _sources(spec: DataSpec, task: TaskSpec, stats: dict) -> dict[str, tuple[Iterable[dict], str]]:
    """{split: (rows as read, source name)} for the splits the recipe names (``data.split.column``: the
    file's rows under "column")."""
    if spec.path is not None and spec.path.is_dir() and spec.file_format in ("auto", "hf_dataset"):
        stats["files"][str(spec.path)] = file_sha256(spec.path)
        stats["file_formats"][str(spec.path)] = "hf_dataset"
        saved = read_saved_splits(spec.path)
        given: dict[str, tuple[Iterable[dict], str]] = {
            SPLIT_NAMES[n]: (rows, f"{spec.path}/{n}") for n, rows in saved.items() if n in SPLIT_NAMES
        }
        if "train" not in given:
            raise DataError(f"{spec.path}: the saved dataset has no 'train' split (splits: {sorted(saved)})")
        return given
    if spec.path is not None and spec.split.column is not None:
        return {"column": (_open(spec.path, "data.path", spec, task, stats), str(spec.path))}
    if spec.path is not None:
        return {"train": (_open(spec.path, "data.path", spec, task, stats), str(spec.path))}
    return {
        name: (_open(path, f"data.{name}", spec, task, stats), str(path))
        for name in SPLITS
        if (path := getattr(spec, name)) is not None
    }


def _assemble(spec: DataSpec, task: TaskSpec, stats: dict, found: Collector) -> dict[str, list[int]]:
    """Read the sources into ``found`` and give {split: row numbers}, carving missing splits by ratio."""
    given = _sources(spec, task, stats)
    given_count = len(given)
    source = "data.sources"
    if spec.sources is not None:
        mixed, found.layout = _mixed_train(spec, task, stats)
        found.add_split("train", mixed)
    elif "column" in given:
        rows, source = given.pop("column")
        streaming.collect_by_column(rows, source, spec, task, found)
    else:
        rows, source = given.pop("train")
        streaming.collect_train(rows, source, spec, task, found)
    for name in ("validation", "test"):
        if name in given:
            rows, source = given[name]
            canonical = Canonical(spec, task, source, found.layout)
            found.add_split(name, (canonical(row) for row in rows))
    read = {name: found.members[name] for name in SPLITS if name in found.members}
    splits = {"train": read["train"]}
    splits.update((name, read[name]) for name in ("validation", "test") if name in read)
    missing = tuple(name for name in ("validation", "test") if name not in splits)
    train = splits["train"]
    strata = found.strata(train, clean=False)
    carved, notes = split_by_ratio(train, spec.split, strata, missing)  # row numbers stand for the rows
    if not carved["train"]:
        went = ", ".join(f"{len(carved[n])} to {n}" for n in missing if n in carved)
        raise DataError(
            f"{source}: {len(train)} row(s) read, and the split leaves none for training ({went})",
            hint="add rows, or lower data.split.validation / data.split.test (or give data.validation / "
            "data.test files)",
        )
    splits.update(carved)
    one_file = spec.path is not None and given_count == 1
    stats["split"] = {
        "method": "column"
        if spec.split.column is not None
        else ("ratio" if one_file or (spec.sources and missing) else "files"),
        "carved": [n for n in missing if n in carved],
        "seed": spec.split.seed,
        "stratified": strata is not None and any(n in carved for n in missing),
        "notes": notes,
    }
    return {name: splits[name] for name in SPLITS if name in splits}


def _mixed_train(spec: DataSpec, task: TaskSpec, stats: dict) -> tuple[Rows, str]:
    """data.sources: each source read with its own columns, in canonical rows, then mixed (data/mixing.py)."""
    read: list[tuple[SourceSpec, Rows]] = []
    layout: str | None = None
    for source in spec.sources or ():
        own = spec.model_copy(
            update={
                "file_format": source.file_format or spec.file_format,
                "columns": spec.columns if source.columns is None else source.columns,
                "column_names": source.column_names or spec.column_names,
            }
        )
        if source.path.is_dir() and own.file_format in ("auto", "hf_dataset"):
            stats["files"][str(source.path)] = file_sha256(source.path)
            rows = read_saved_splits(source.path).get("train") or []
        else:
            rows = _read(source.path, f"data.sources ({source.label})", own, task, stats)
        rows, layout = _canonical(rows, own, task, str(source.path), layout)
        read.append((source, rows))
    assert layout is not None  # the schema requires at least one source
    mixed, stats["sources"] = mix(read, spec.mixing, spec.cleaning, layout, spec.split.seed)
    return mixed, layout


# --- cleaning ----------------------------------------------------------------------------------


def _clean(splits: dict[str, list[int]], found: Collector, stats: dict) -> dict[str, list[int]]:
    spec = found.spec
    dropped: dict[str, dict[str, int]] = {"empty": {}, "duplicate": {}, "cross_split": {}, "max_samples": {}}
    splits = streaming.clean(splits, found, dropped)
    seed = spec.split.seed if spec.sample_seed is None else spec.sample_seed
    for name, numbers in splits.items():
        splits[name], dropped["max_samples"][name] = cleaning.cap_rows(numbers, spec.max_samples, seed)
    stats["dropped"] = dropped
    if spec.max_train_samples is not None:
        _sample_train(splits, found, seed, stats)
    if not splits["train"]:
        raise DataError(
            f"the training data ({', '.join(stats['files']) or 'data.train'}) is empty after cleaning: "
            f"{_drop_story('train', stats)}",
            hint="check the file and data.columns; cleaning rules can be switched off under data.cleaning",
        )
    return splits


def _sample_train(splits: dict[str, list[int]], found: Collector, seed: int, stats: dict) -> None:
    """``data.max_train_samples``: a seeded (stratified where it applies) sample of the training split."""
    limit = found.spec.max_train_samples
    assert limit is not None
    train = splits["train"]
    strata = found.strata(train, clean=True)
    splits["train"] = sample_rows(train, limit, seed, strata)
    stats["dropped"]["max_train_samples"] = {"train": len(train) - len(splits["train"])}
    stats["train_sample"] = {
        "limit": limit,
        "available": len(train),
        "kept": len(splits["train"]),
        "seed": seed,
        "stratified": strata is not None,
    }


def _drop_story(split: str, stats: dict) -> str:
    read = stats["rows_read"].get(split, 0)
    rules = {
        "empty": "empty (cleaning.drop_empty)",
        "duplicate": "exact duplicates (cleaning.deduplicate)",
        "cross_split": "also in validation/test (cleaning.deduplicate)",
        "overlength": "longer than data.max_seq_length (cleaning.overlength: drop)",
        "completion_truncated": "with the whole completion truncated away (cleaning.overlength: truncate)",
    }
    parts = [
        f"{stats['dropped'].get(rule, {}).get(split, 0)} {text}"
        for rule, text in rules.items()
        if stats["dropped"].get(rule, {}).get(split, 0)
    ]
    return f"{read} row(s) read, dropped: " + (", ".join(parts) or "none")


def _new_stats() -> dict[str, Any]:
    return {"files": {}, "file_formats": {}, "normalized": {"unicode": 0, "whitespace": 0}, "warnings": []}


def _load(spec: DataSpec, task: TaskSpec, folder: Path):
    """(rows of each split with ``_where``, layout, labels, stats, the row numbers of each split); the
    rows live in ``folder``/rows.arrow."""
    stats = _new_stats()
    found = Collector(spec, task, stats["normalized"], folder)
    numbers = _assemble(spec, task, stats, found)
    layout = found.layout
    assert layout is not None
    dataset = found.close()
    stats["format"] = layout
    stats["rows_read"] = {name: len(rows) for name, rows in numbers.items()}
    numbers = _clean(numbers, found, stats)
    splits = streaming.stores(dataset, numbers, where=True)
    for name in ("validation", "test"):
        if name in splits and not splits[name] and stats["rows_read"].get(name):
            stats["warnings"].append(f"the {name} split is empty after cleaning: {_drop_story(name, stats)}")
    labels = resolve_labels(splits, task, layout)
    if layout == "regression":
        labels = target_names(task)
        stats["targets"] = target_stats(list(splits["train"]), labels)
    stats["inputs"] = ["text", "text_b"] if is_pair(splits["train"]) else None
    if labels is not None and layout in LABELLED:
        stats["warnings"] += check_labels(splits, labels, task, layout)
        if task.negative_label is not None and task.negative_label not in labels:
            stats["warnings"].append(f"task.negative_label {task.negative_label!r} is not among the labels")
        stats["label_counts"] = {name: label_counts(rows, layout) for name, rows in splits.items()}
    stats["labels"] = list(labels) if labels is not None else None
    if "sources" in stats:
        final_counts(stats["sources"], splits)
    stats["rows_cleaned"] = {name: len(splits.get(name, [])) for name in SPLITS}
    stats["rows"] = dict(stats["rows_cleaned"])
    return splits, layout, labels, stats, numbers


def _strip(splits: dict[str, Rows]) -> dict[str, list[dict]]:
    return {
        name: [{k: v for k, v in row.items() if k != WHERE} for row in splits.get(name, [])]
        for name in SPLITS
    }


def _scratch() -> Path:
    """A folder for one preparation's Arrow files, removed when the process ends (or, if it is killed, by the
    next lora-adapt process that makes a scratch folder)."""
    folder = scratch_folder("prepared")
    atexit.register(shutil.rmtree, folder, True)
    return folder


def load_split_rows(spec: DataSpec, task: TaskSpec) -> tuple[dict[str, list[dict]], dict]:
    """Cleaned, split and checked rows in canonical columns, and their stats (no tokenizer needed)."""
    with scratch_dir("rows") as folder:
        splits, _, _, stats, _ = _load(spec, task, Path(folder))
        return _strip(splits), stats


def load_rows_from_file(path: str | Path, spec: DataSpec, task: TaskSpec) -> list[dict]:
    """One file -> canonical rows, normalised and with empty rows dropped as in training (no dedup).

    Labels are checked against ``task.labels`` when given (pass the run's label set).
    """
    path = Path(path)
    stats = _new_stats()
    rows, layout = _canonical(
        _read(path, "the file to evaluate", spec, task, stats), spec, task, str(path), None
    )
    rows = cleaning.normalize_rows(rows, spec.cleaning, stats["normalized"])
    if spec.cleaning.drop_empty:
        rows, _ = cleaning.drop_empty(rows, layout)
    if not rows:
        raise DataError(
            f"{path}: no rows to score (the file is empty, or every row is empty)",
            hint="check that it is the right file and that its columns match the run's data.columns",
        )
    if task.labels is not None and layout in LABELLED:
        check_known({"evaluation": rows}, tuple(task.labels), task, layout)
    return _strip({"train": rows})["train"]


# --- tokenizing --------------------------------------------------------------------------------


def tokenize_head_rows(
    rows: list[dict],
    spec: DataSpec,
    task: TaskSpec,
    tokenizer,
    labels: tuple[str, ...] | None,
    scaling: dict | None = None,
) -> datasets.Dataset:
    """Canonical rows (e.g. from ``load_rows_from_file``) tokenized for a head, aligned row for row: text or
    text pair, truncated to ``data.max_seq_length``; ``labels`` are the run's label set (regression: target
    names, with ``scaling`` the head was trained with)."""
    import datasets

    layout = TASK_LAYOUTS.get(task.type, "classification")
    ctx = {"spec": spec, "task": task, "tokenizer": tokenizer, "scaling": scaling}
    counts = tokenize_head(rows, layout, tuple(labels or ()), ctx)
    return datasets.Dataset.from_dict(counts.columns)


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Preparation allocates container objects per row (row dicts, token id lists) that reference counting
    frees; none forms a cycle, so the cyclic collector's passes over them (a sixth of the preparation's CPU
    time on short rows) find nothing. It is paused meanwhile (``_prepare`` collects the young generation
    once a batch, in case a tokenizer's chat template leaves a cycle), and restored."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def prepare_data(
    spec: DataSpec, task: TaskSpec, tokenizer, *, head: bool, folder: Path | None = None
) -> PreparedData:
    """Read, clean, split, check and tokenize the recipe's data for training. The splits are Arrow files in
    ``folder`` (a scratch folder removed at exit when not given), read memory-mapped: rows.arrow (the rows
    read, as JSON), indices/<split>.npy (each split's rows in it) and tokenized/<split>.arrow."""
    with _no_cycle_collection():
        return _prepare(spec, task, tokenizer, head=head, folder=folder)


def _prepare(spec: DataSpec, task: TaskSpec, tokenizer, *, head: bool, folder: Path | None) -> PreparedData:
    folder = Path(folder) if folder is not None else _scratch()
    (folder / "tokenized").mkdir(parents=True, exist_ok=True)
    (folder / "indices").mkdir(exist_ok=True)
    splits, layout, labels, stats, numbers = _load(spec, task, folder)
    if head and labels is None:
        raise DataError(
            f"a classifier head needs a labelled task, not the {layout} layout",
            hint="use task.mode: generative, or a classification / token_classification task",
        )
    if layout == "regression":
        stats["targets"]["scaling"] = head_scaling(stats["targets"], target_scaling(task) if head else "none")
    ctx = {
        "spec": spec,
        "task": task,
        "tokenizer": tokenizer,
        "labels": labels,
        "template": resolve_chat_template(tokenizer, spec.chat_template),
        "scaling": (stats.get("targets") or {}).get("scaling"),
    }
    trained_layout = layout if head else generative_layout(layout, ctx["template"])
    built: dict[str, datasets.Dataset | None] = {}
    per_split: dict[str, dict] = {}
    for name in SPLITS:
        rows = splits.get(name)
        if name in numbers:
            np.save(folder / "indices" / f"{name}.npy", np.asarray(numbers[name], dtype=np.int64))
        if not rows:
            built[name] = None
            continue
        total, writer = SplitCounts(), ColumnWriter(folder / "tokenized" / f"{name}.arrow")
        for batch in rows.batches(TOKENIZE_BATCH):
            if labels is not None and head:
                counts = tokenize_head(batch, layout, labels, ctx)
            else:
                counts = tokenize_generative(batch, layout, ctx)
            writer.add(counts.columns)
            total.add(counts)
            gc.collect(1)
        per_split[name] = total.summary()
        built[name] = writer.close() if total.examples else None
    _tokenization_stats(stats, per_split, spec, head, trained_layout)
    if built["train"] is None:
        raise DataError(
            f"the training data is empty after tokenization: {_drop_story('train', stats)}",
            hint="raise data.max_seq_length or set data.cleaning.overlength: truncate",
        )
    return PreparedData(
        train=built["train"],
        validation=built["validation"],
        test=built["test"],
        raw={name: splits[name].without_where() if name in splits else [] for name in SPLITS},
        layout=trained_layout,
        labels=labels,
        stats=stats,
        folder=folder,
    )


def _tokenization_stats(
    stats: dict, per_split: dict[str, dict], spec: DataSpec, head: bool, layout: str
) -> None:
    stats["layout"] = layout
    stats["mode"] = "head" if head else "generative"
    stats["max_seq_length"] = spec.max_seq_length
    stats["dropped"]["overlength"] = {n: s["dropped_overlength"] for n, s in per_split.items()}
    stats["dropped"]["completion_truncated"] = {
        n: s["dropped_completion_truncated"] for n, s in per_split.items()
    }
    stats["truncated"] = {n: s["truncated"] for n, s in per_split.items()}
    stats["eos_trained"] = None if head else {n: s["eos_trained_share"] for n, s in per_split.items()}
    stats["tokens"] = {
        n: {k: s[k] for k in ("tokens", "trained_tokens", "max_length")} for n, s in per_split.items()
    }
    stats["rows"] = {name: per_split.get(name, {}).get("examples", 0) for name in SPLITS}
