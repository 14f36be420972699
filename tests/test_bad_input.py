"""Each bad input gives one clear message, a hint, the right exit code, no traceback, nothing written."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import instruction_rows, sft_recipe, task_recipe, write_jsonl

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
    # a file where the output folder should be: found before anything is loaded, said plainly
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the output folder should be")
    recipe = sft_recipe(tmp_path, tiny_llama_dir, good_data)
    result = run_cli("run", str(recipe))
    assert result.exit_code == 1
    assert "error:" in result.output and "is not a folder" in result.output and "hint:" in result.output
    assert "model:" not in result.output  # refused before the model was loaded
    json.dumps(result.output)


# --- labels: never coerced into classes, never dropped silently -----------------------------------


@pytest.mark.parametrize(
    "labels, line, message",
    [
        (["billing", "outage", 1, True], 3, "label 1 is an integer, but the file's first label"),
        ([0, 1, 2.5, 1], 3, "label 2.5 is a number with a fraction"),
        (["billing", None, "outage", "meter"], 2, "the label is null"),
        ([True, False, "True", False], 3, "label 'True' is a string, but the file's first label"),
    ],
)
def test_labels_of_mixed_types_floats_and_nulls_are_errors_naming_file_and_line(
    tiny_bert_dir, tmp_path, labels, line, message
):
    rows = [{"text": f"ticket {i} about something", "label": labels[i % 4]} for i in range(24)]
    data = write_jsonl(tmp_path / "tickets.jsonl", rows)
    recipe = task_recipe(tmp_path, tiny_bert_dir, {"path": str(data)}, {"type": "classification"})
    result = run_cli("run", str(recipe))
    assert result.exit_code == 2, result.output
    assert f"tickets.jsonl:{line}: {message}" in result.output and "hint:" in result.output
    assert_nothing_written(tmp_path)


# --- clear errors: the file, the problem and the fix ------------------------------------------------


def test_a_one_row_dataset_says_where_the_row_went(tiny_llama_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", instruction_rows(1))
    result = run_cli("run", str(sft_recipe(tmp_path, tiny_llama_dir, data)))
    assert result.exit_code == 2
    assert (
        "train.jsonl: 1 row(s) read, and the split leaves none for training (0 to validation, 1 to test)"
        in (result.output)
    )
    assert "data.split" in result.output
    assert_nothing_written(tmp_path)


def test_an_empty_training_file_is_named(tiny_llama_dir, tmp_path):
    (tmp_path / "train.jsonl").write_text("")
    result = run_cli("run", str(sft_recipe(tmp_path, tiny_llama_dir, tmp_path / "train.jsonl")))
    assert result.exit_code == 2 and "train.jsonl: the training file has no rows" in result.output


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])
def test_a_utf16_file_gets_the_utf16_conversion_hint(tiny_llama_dir, tmp_path, encoding):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in instruction_rows(8)), encoding=encoding)
    result = run_cli("run", str(sft_recipe(tmp_path, tiny_llama_dir, data)))
    assert result.exit_code == 2, result.output
    assert "UTF-16" in result.output and "text, not UTF-8" in result.output
    assert "iconv -f UTF-16 -t UTF-8" in result.output and "latin1" not in result.output


def test_a_recipe_that_is_a_yaml_list_says_so(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("- name: x\n- model: y\n")
    for extra in ((), ("--set", "name=x")):
        result = run_cli("validate", str(recipe), *extra)
        assert result.exit_code == 2
        assert "recipe.yaml:1: the recipe is a YAML list" in result.output and "missing" not in result.output


def test_a_custom_code_model_hint_names_trust_remote_code(tiny_llama_dir, good_data, tmp_path):
    custom = Path(shutil.copytree(tiny_llama_dir, tmp_path / "custom"))
    config = json.loads((custom / "config.json").read_text())
    config.update(
        model_type="my_custom_lm",
        auto_map={"AutoConfig": "configuration_my.MyConfig", "AutoModelForCausalLM": "modeling_my.MyModel"},
    )
    (custom / "config.json").write_text(json.dumps(config))
    result = run_cli("run", str(sft_recipe(tmp_path, custom, good_data, data={"max_seq_length": 256})))
    assert result.exit_code == 2, result.output
    assert "custom code" in result.output and "model.trust_remote_code: true" in result.output


def test_a_fifo_as_data_is_refused_instead_of_blocking(tiny_llama_dir, tmp_path):
    fifo = tmp_path / "train.jsonl"
    os.mkfifo(fifo)
    unblocked = threading.Event()

    def unblock():  # a reader that hangs on the FIFO is released (and the test fails) instead of hanging
        unblocked.set()
        fifo.open("w").close()

    timer = threading.Timer(300, unblock)
    timer.daemon = True
    timer.start()
    try:
        result = run_cli("run", str(sft_recipe(tmp_path, tiny_llama_dir, fifo)))
    finally:
        timer.cancel()
    assert not unblocked.is_set(), "something opened the FIFO before refusing it"
    assert result.exit_code == 2 and "is a FIFO (named pipe), not a regular file" in result.output
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize(
    ("targets", "named"),
    [
        ("[nonexistent]", "'nonexistent' matches no module"),  # peft: "Target modules ... not found"
        ("[q_proj, v_prj]", "'v_prj' matches no module"),  # peft: trains q_proj alone, without a word
        ("[layers]", "names a block of layers, not a layer"),  # peft: prints the whole ModuleList
    ],
)
def test_target_modules_the_model_lacks_are_named_with_the_layers_it_has(
    tiny_llama_dir, good_data, tmp_path, targets, named
):
    recipe = sft_recipe(tmp_path, tiny_llama_dir, good_data)
    result = run_cli("run", str(recipe), "--set", f"adapter.target_modules={targets}")
    assert result.exit_code == 2, result.output
    assert "adapter.target_modules" in result.output and named in result.output, result.output
    assert "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj" in result.output
    assert "hint:" in result.output and "LlamaModel(" not in result.output  # not peft's module dump
    if "v_prj" in targets:
        assert "did you mean 'v_proj'?" in result.output
    assert_nothing_written(tmp_path)
