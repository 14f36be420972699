"""Each bad input gives one clear message, a hint, the right exit code, no traceback, nothing written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import instruction_rows, sft_recipe, write_jsonl

from lora_adapt.cli import main


def run_cli(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


def assert_nothing_written(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir()), f"left behind: {list(runs.iterdir())}"


@pytest.fixture
def good_data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", instruction_rows(16))


def test_missing_data_file(tiny_llama_dir, tmp_path):
    recipe = sft_recipe(tmp_path, tiny_llama_dir, tmp_path / "nope.jsonl")
    result = run_cli("run", str(recipe))
    assert result.exit_code == 2
    assert "nope.jsonl" in result.output and "hint:" in result.output
    assert_nothing_written(tmp_path)


def test_malformed_jsonl_line_is_named(tiny_llama_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", instruction_rows(8))
    with data.open("a") as f:
        f.write('{"instruction": "broken", "output": \n')
    recipe = sft_recipe(tmp_path, tiny_llama_dir, data)
    result = run_cli("run", str(recipe))
    assert result.exit_code == 2
    assert "train.jsonl:9" in result.output
    assert_nothing_written(tmp_path)


def test_missing_column_lists_what_exists(tiny_llama_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "answer": "a"}] * 8)
    recipe = sft_recipe(tmp_path, tiny_llama_dir, data, data={"format": "instruction"})
    result = run_cli("run", str(recipe))
    assert result.exit_code == 2
    assert "question" in result.output and "data.columns" in result.output
    assert_nothing_written(tmp_path)


def test_dataset_empty_after_cleaning(tiny_llama_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", [{"text": "   "}] * 8)
    recipe = sft_recipe(tmp_path, tiny_llama_dir, data)
    result = run_cli("run", str(recipe))
    assert result.exit_code == 2
    assert "empty" in result.output.lower()
    assert_nothing_written(tmp_path)


def test_model_path_that_does_not_exist(good_data, tmp_path):
    recipe = sft_recipe(tmp_path, tmp_path / "no-such-model", good_data)
    result = run_cli("run", str(recipe))
    assert result.exit_code == 2
    assert "does not exist" in result.output and "hint:" in result.output
    assert_nothing_written(tmp_path)


def test_pickle_only_model_is_refused(good_data, tmp_path, tiny_llama_dir):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_llama_dir / "config.json").read_text())
    (folder / "pytorch_model.bin").write_bytes(b"not really")
    recipe = sft_recipe(tmp_path, folder, good_data)
    result = run_cli("run", str(recipe))
    assert result.exit_code == 2
    assert "safetensors" in result.output and "allow_pickle" in result.output


def test_four_bit_without_bitsandbytes(tiny_llama_dir, good_data, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a)
    )
    recipe = sft_recipe(tmp_path, tiny_llama_dir, good_data, quantization={"method": "nf4"})
    result = run_cli("run", str(recipe))
    assert result.exit_code == 2
    assert "bitsandbytes" in result.output and "pip install" in result.output
    assert_nothing_written(tmp_path)


def test_bad_recipe_key_exit_2(tiny_llama_dir, good_data, tmp_path):
    recipe = sft_recipe(tmp_path, tiny_llama_dir, good_data, training={"learning_rat": 0.1})
    result = run_cli("run", str(recipe))
    assert result.exit_code == 2
    assert "did you mean 'learning_rate'" in result.output
    assert_nothing_written(tmp_path)


def test_bad_override_exit_2(tiny_llama_dir, good_data, tmp_path):
    recipe = sft_recipe(tmp_path, tiny_llama_dir, good_data)
    result = run_cli("run", str(recipe), "--set", "adapter.rank=zero")
    assert result.exit_code == 2
    assert "--set adapter.rank" in result.output


def test_debug_shows_traceback(tiny_llama_dir, tmp_path):
    recipe = sft_recipe(tmp_path, tiny_llama_dir, tmp_path / "nope.jsonl")
    result = CliRunner().invoke(main, ["--debug", "run", str(recipe)])
    assert result.exit_code == 2
    assert "Traceback" in result.output or result.exc_info is not None


def test_runtime_failure_exit_1_without_traceback(tiny_llama_dir, good_data, tmp_path):
    # a data row that tokenizes fine but a learning rate that explodes is not an error; an unreadable
    # run directory for `eval` style commands is: use a file where a folder is expected.
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the output folder should be")
    recipe = sft_recipe(tmp_path, tiny_llama_dir, good_data)
    result = run_cli("run", str(recipe))
    assert result.exit_code == 1
    assert "error:" in result.output and "--debug" in result.output
    json.dumps(result.output)
