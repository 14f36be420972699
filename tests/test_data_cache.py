"""The prepared-data cache (data/cache.py): a rerun reads back exactly what preparation produced; a changed
file, setting or tokenizer misses; a damaged entry is rebuilt, never trusted; concurrent writers of one
key leave one intact entry; `lora-adapt data prepare` fills it and a run reuses it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import instruction_rows, run_cli, sft_recipe, task_recipe, ticket_rows, write_jsonl

from lora_adapt.data import prepare_data
from lora_adapt.data.cache import entry_key, key_inputs, prepared, read_entry, write_entry
from lora_adapt.recipe import load_recipe
from lora_adapt.runtime import recipe_tokenizer


def same(a, b) -> None:
    """Two PreparedData hold the same token ids, rows, labels, layout and stats."""
    for name in ("train", "validation", "test"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.column_names == y.column_names and x.to_dict() == y.to_dict(), name
        assert list(a.raw.get(name) or []) == list(b.raw.get(name) or []), name
    assert (a.layout, a.labels) == (b.layout, b.labels)
    assert json.loads(json.dumps(a.stats, default=str)) == json.loads(json.dumps(b.stats, default=str))


@pytest.fixture
def sft(tmp_path, tiny_llama_dir):
    data = write_jsonl(tmp_path / "d.jsonl", instruction_rows(40) + instruction_rows(4))  # 4 duplicates
    recipe = load_recipe(sft_recipe(tmp_path, tiny_llama_dir, data))
    return recipe, recipe_tokenizer(recipe), data


def test_a_rerun_reads_back_exactly_what_preparation_produced(sft, tmp_path):
    recipe, tokenizer, _ = sft
    said: list[str] = []
    first = prepared(recipe.data, recipe.task, tokenizer, head=False, root=tmp_path / "c", echo=said.append)
    second = prepared(recipe.data, recipe.task, tokenizer, head=False, root=tmp_path / "c", echo=said.append)
    assert "cached in" in said[0] and "from the cache" in said[1]
    fresh = prepare_data(recipe.data, recipe.task, tokenizer, head=False)
    same(first, fresh)
    same(second, fresh)
    assert fresh.stats["dropped"]["duplicate"]["train"] + fresh.stats["dropped"]["cross_split"]["train"] > 0
    assert len(list((tmp_path / "c").iterdir())) == 1


def test_head_task_rows_and_labels_round_trip(tmp_path, tiny_bert_dir):
    data = write_jsonl(tmp_path / "t.jsonl", ticket_rows(60))
    recipe = load_recipe(
        task_recipe(tmp_path, tiny_bert_dir, {"path": str(data)}, {"type": "classification"})
    )
    tokenizer = recipe_tokenizer(recipe)
    prepared(recipe.data, recipe.task, tokenizer, head=True, root=tmp_path / "c")
    cached = prepared(recipe.data, recipe.task, tokenizer, head=True, root=tmp_path / "c")
    same(cached, prepare_data(recipe.data, recipe.task, tokenizer, head=True))
    assert cached.raw["test"][0] == list(cached.raw["test"])[0]


def test_empty_splits_round_trip(tmp_path, tiny_llama_dir):
    """A split of no rows (validation: 0) reads back as no rows."""
    data = write_jsonl(tmp_path / "d.jsonl", instruction_rows(20))
    recipe = load_recipe(
        sft_recipe(tmp_path, tiny_llama_dir, data, data={"split": {"validation": 0.0, "test": 0.0}})
    )
    tokenizer = recipe_tokenizer(recipe)
    prepared(recipe.data, recipe.task, tokenizer, head=False, root=tmp_path / "c")
    cached = prepared(recipe.data, recipe.task, tokenizer, head=False, root=tmp_path / "c")
    same(cached, prepare_data(recipe.data, recipe.task, tokenizer, head=False))
    assert list(cached.raw["validation"]) == [] and len(cached.train) > 0


def test_changed_file_setting_tokenizer_or_mode_misses(sft, tmp_path):
    recipe, tokenizer, data = sft
    key = entry_key(key_inputs(recipe.data, recipe.task, tokenizer, head=False))
    longer = recipe.data.model_copy(update={"max_seq_length": 64})
    assert entry_key(key_inputs(longer, recipe.task, tokenizer, head=False)) != key
    assert entry_key(key_inputs(recipe.data, recipe.task, tokenizer, head=True)) != key
    tokenizer.chat_template = "{{ messages }}"
    assert entry_key(key_inputs(recipe.data, recipe.task, tokenizer, head=False)) != key
    tokenizer.chat_template = None
    assert entry_key(key_inputs(recipe.data, recipe.task, tokenizer, head=False)) == key
    write_jsonl(data, instruction_rows(41))
    assert entry_key(key_inputs(recipe.data, recipe.task, tokenizer, head=False)) != key


def test_a_damaged_entry_is_rebuilt_not_trusted(sft, tmp_path):
    recipe, tokenizer, _ = sft
    root = tmp_path / "c"
    prepared(recipe.data, recipe.task, tokenizer, head=False, root=root)
    entry = next(root.iterdir())
    arrow = entry / "tokenized" / "train.arrow"
    raw = bytearray(arrow.read_bytes())
    raw[-100] ^= 0xFF  # one flipped byte inside the token ids
    arrow.write_bytes(bytes(raw))
    assert read_entry(entry) is None and not entry.exists()  # refused and moved aside
    said: list[str] = []
    rebuilt = prepared(recipe.data, recipe.task, tokenizer, head=False, root=root, echo=said.append)
    assert "cached in" in said[0]
    same(rebuilt, prepare_data(recipe.data, recipe.task, tokenizer, head=False))


def test_a_missing_entry_is_not_built_when_asked_not_to(sft, tmp_path):
    recipe, tokenizer, _ = sft
    assert prepared(recipe.data, recipe.task, tokenizer, head=False, root=tmp_path / "c", build=False) is None
    assert not (tmp_path / "c").exists()


def test_two_writers_of_one_key_leave_one_intact_entry(sft, tmp_path):
    recipe, tokenizer, _ = sft
    inputs = key_inputs(recipe.data, recipe.task, tokenizer, head=False)
    folder = tmp_path / "c" / entry_key(inputs)
    data = prepare_data(recipe.data, recipe.task, tokenizer, head=False)
    write_entry(folder, data, inputs)
    write_entry(folder, data, inputs)  # the second rename finds the first: theirs is kept
    assert [p.name for p in (tmp_path / "c").iterdir()] == [folder.name]
    same(read_entry(folder), data)


def test_data_prepare_fills_the_cache_and_a_run_reuses_it(sft, tmp_path, monkeypatch):
    recipe, _, data = sft
    cache = tmp_path / "cache"
    monkeypatch.setenv("LORA_ADAPT_DATA_CACHE", str(cache))
    path = Path(tmp_path / "recipe.yaml")
    out = run_cli("data", "prepare", str(path))
    assert "cached in" in out.output and len(list(cache.iterdir())) == 1
    again = run_cli("run", str(path), "--dry-run")
    assert "prepared data from the cache" in again.output


def test_shipped_data_is_the_same_through_the_cache(shared_data, tmp_path, tiny_llama_dir):
    """The same cleaning counts and token ids on the shipped SMS Spam data, fresh and through the cache."""
    path = shared_data / "sms_spam" / "SMSSpamCollection"
    if not path.exists():
        pytest.skip("sms_spam not in the shared data")
    recipe = load_recipe(
        task_recipe(
            tmp_path,
            tiny_llama_dir,
            {"path": str(path), "file_format": "tsv", "column_names": ["label", "text"]},
            {"type": "classification", "mode": "generative"},
        )
    )
    tokenizer = recipe_tokenizer(recipe)
    fresh = prepare_data(recipe.data, recipe.task, tokenizer, head=False)
    prepared(recipe.data, recipe.task, tokenizer, head=False, root=tmp_path / "c")
    cached = prepared(recipe.data, recipe.task, tokenizer, head=False, root=tmp_path / "c")
    same(cached, fresh)
    assert fresh.stats["dropped"]["duplicate"]["train"] > 0


def test_the_key_covers_the_code_the_data_stage_runs():
    """Preparation reads task rules outside data/ (regression targets and scaling in recipe/derived.py):
    a change there is a new key too. Specs (dumped into the key), error messages and where scratch folders
    go (artifacts.py) are not code to hash."""
    import re

    from lora_adapt.data import cache

    package = Path(cache.__file__).resolve().parents[1]
    hashed = {p.relative_to(package).as_posix() for p in cache.data_code_files()}
    imported = set()
    for source in (package / "data").glob("*.py"):
        imported |= set(re.findall(r"from \.\.([\w.]+) import", source.read_text()))
    outside = {m.replace(".", "/") + ".py" for m in imported}
    assert "recipe/derived.py" in hashed
    assert outside - hashed <= {"errors.py", "recipe/schema.py", "recipe/mixing.py", "artifacts.py"}, (
        outside - hashed
    )


def test_a_failed_cache_write_leaves_the_run_its_prepared_files(sft, tmp_path, monkeypatch):
    """The run goes on uncached: the Arrow files it was prepared into stay until the process ends."""
    import lora_adapt.data.cache as cache

    recipe, tokenizer, _ = sft

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache, "_xxh3", full_disk)
    said: list[str] = []
    data = prepared(recipe.data, recipe.task, tokenizer, head=False, root=tmp_path / "c", echo=said.append)
    assert any("not cached (OSError" in line for line in said), said
    assert data.folder is not None and (data.folder / "rows.arrow").is_file()
    assert not [p for p in (tmp_path / "c").iterdir() if not p.name.startswith(".")]  # no entry
    same(data, prepare_data(recipe.data, recipe.task, tokenizer, head=False))


KILLED_MID_PREPARATION = r"""
import os, signal, sys
from pathlib import Path
from lora_adapt.data import cache, preparation
from lora_adapt.recipe import load_recipe
from lora_adapt.runtime import recipe_tokenizer

recipe = load_recipe(sys.argv[1])
tokenizer = recipe_tokenizer(recipe)
preparation.tokenize_generative = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # rows read, then killed
data = recipe.data.model_copy(update={"cache": sys.argv[2] == "cached"})
cache.prepared(data, recipe.task, tokenizer, head=False, root=Path(sys.argv[3]))
"""


@pytest.mark.parametrize("cached", [True, False])
def test_what_a_preparation_killed_midway_left_is_removed_by_the_next_one(sft, tmp_path, cached, monkeypatch):
    """SIGKILL runs no cleanup: the half-written stage beside a cache entry, or the Arrow scratch folder of
    an uncached preparation, stays; the next preparation on this machine removes it, and nothing of a
    process still running."""
    import os
    import subprocess
    import sys
    import tempfile

    from lora_adapt import artifacts as A

    recipe, tokenizer, _ = sft
    root, scratch = tmp_path / "c", tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    mode = "cached" if cached else "uncached"
    command = [sys.executable, "-c", KILLED_MID_PREPARATION, str(tmp_path / "recipe.yaml"), mode, str(root)]
    killed = subprocess.run(command, env=env, capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    where = root if cached else scratch
    (left,) = list(where.iterdir())
    assert (left / "rows.arrow").is_file()  # the rows were written before the kill
    running = os.getppid()  # a process still running here: what it is writing stays
    if cached:
        key = entry_key(key_inputs(recipe.data, recipe.task, tokenizer, head=False))
        assert left.name.startswith(f".{key}.{A.host_tag()}-") and left.name.endswith(".tmp")
        alive = root / f".{key}.{A.host_tag()}-{running}.abcd1234.tmp"
    else:
        assert left.name.startswith(f"lora-adapt-prepared-{A.host_tag()}-")
        alive = scratch / f"lora-adapt-prepared-{A.host_tag()}-{running}-abcd_123"
    alive.mkdir()

    data = recipe.data.model_copy(update={"cache": cached})
    again = prepared(data, recipe.task, tokenizer, head=False, root=root)
    assert not left.exists() and alive.is_dir()
    same(again, prepare_data(recipe.data, recipe.task, tokenizer, head=False))
