"""One reader of run directories and adapter folders, one reload of base + adapters (checked against the
recorded base), and the decisions derived from a recipe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import task_recipe, ticket_rows, write_jsonl
from tiny_models import build_tiny_bert

from lora_adapt import artifacts as A
from lora_adapt.errors import LoraAdaptError, ModelLoadError, UsageError
from lora_adapt.modeling import load_adapted
from lora_adapt.pipeline import run
from lora_adapt.recipe import load_recipe
from lora_adapt.recipe.derived import head_kind, is_quantized, mode_recipe, task_mode
from lora_adapt.recipe.schema import QuantizationSpec, TaskSpec
from lora_adapt.rundir import read_adapter, read_run

IDS = [[2, 15, 27, 33, 41, 3]]


@pytest.fixture(scope="module")
def head_run(tiny_bert_dir, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("head")
    data = write_jsonl(tmp / "tickets.jsonl", ticket_rows(36))
    recipe = task_recipe(
        tmp,
        tiny_bert_dir,
        {"path": str(data), "split": {"validation": 0.15, "test": 0.2}},
        {"type": "classification", "pooling": "mean"},
        training={"max_steps": 4},
        evaluation={"baselines": ["majority"]},
    )
    return run(load_recipe(recipe), echo=lambda _: None).run_dir


def logits(model, ids=IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids), attention_mask=torch.ones(len(ids), len(ids[0]))).logits


def test_run_dir_records_head_labels_and_pooling_and_the_adapter_describes_itself(head_run):
    info = read_run(head_run)
    assert (info.head, info.mode, info.pooling, info.labels) == (
        "sequence_classification",
        "head",
        "mean",
        ("billing", "meter", "outage"),
    )
    record = A.read_json(head_run / A.ADAPTER_DIR / A.ADAPTER_RECORD)
    assert record["task"]["head"] == "sequence_classification" and record["task"]["pooling"] == "mean"
    assert record["base_model"]["config_sha256"] == info.base_model["config_sha256"]


def test_adapter_folder_copied_elsewhere_reloads_like_its_run(head_run, tmp_path):
    alone = Path(shutil.copytree(head_run / A.ADAPTER_DIR, tmp_path / "exported"))
    from_folder = read_adapter(alone)
    assert from_folder.run is None and from_folder.labels == read_run(head_run).labels
    assert from_folder.pooling == "mean" and from_folder.head == "sequence_classification"
    a, b = load_adapted(head_run), load_adapted(alone)
    assert torch.equal(logits(a.model), logits(b.model))
    with a.model.disable_adapter():
        assert not torch.allclose(logits(a.model), logits(b.model)), "the adapter must change the outputs"


def test_two_adapters_on_one_base_switch_per_call(head_run, tmp_path):
    other = Path(shutil.copytree(head_run / A.ADAPTER_DIR, tmp_path / "other"))
    with torch.no_grad():  # make the second adapter differ: scale its classifier
        from safetensors.torch import load_file, save_file

        weights = load_file(other / A.ADAPTER_WEIGHTS)
        save_file(
            {k: v * 2 if "classifier" in k else v for k, v in weights.items()}, other / A.ADAPTER_WEIGHTS
        )
    record = A.read_json(other / A.ADAPTER_RECORD)
    A.atomic_write_json(other / A.ADAPTER_RECORD, {**record, "name": "other"})
    both = load_adapted([head_run, other])
    assert list(both.adapters) == [read_run(head_run).name, "other"]
    first = logits(both.model)
    both.model.set_adapter("other")
    assert not torch.allclose(first, logits(both.model))
    alone = load_adapted(other)
    assert torch.allclose(logits(both.model), logits(alone.model), atol=1e-6)


def test_a_different_base_of_the_same_architecture_is_refused_naming_the_difference(head_run, tmp_path):
    other = build_tiny_bert(tmp_path / "other-bert", seed=7)
    with pytest.raises(ModelLoadError) as err:
        load_adapted(head_run, base=other)
    assert "is not the base" in err.value.message and "differs" in err.value.message
    assert err.value.exit_code == 2


def test_eval_refuses_a_run_whose_recorded_base_was_replaced(head_run, tmp_path):
    from click.testing import CliRunner

    from lora_adapt.cli import main

    moved = Path(shutil.copytree(head_run, tmp_path / "run"))
    manifest = A.read_json(moved / A.MANIFEST)
    other = build_tiny_bert(tmp_path / "other-bert", seed=7)
    manifest["base_model"]["resolved_path"] = str(other)
    A.atomic_write_json(moved / A.MANIFEST, manifest)
    result = CliRunner().invoke(main, ["eval", str(moved)])
    assert result.exit_code == 2 and "is not the base" in result.output, result.output


def test_unfinished_damaged_and_missing_runs_are_refused(head_run, tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        read_run(tmp_path / "nope")
    stage = A.in_progress_dir(tmp_path / "cut")
    stage.mkdir()
    with pytest.raises(UsageError, match="not a finished run.*interrupted"):
        read_run(stage)
    damaged = Path(shutil.copytree(head_run, tmp_path / "damaged"))
    (damaged / A.MANIFEST).write_text('{"name": ')
    with pytest.raises(UsageError, match="damaged: not valid JSON"):
        read_run(damaged)
    with pytest.raises(LoraAdaptError, match="neither a run directory"):
        read_adapter(tmp_path)


def test_quantization_override_loads_unquantized_and_as_trained_by_default(head_run):
    adapted = load_adapted(head_run, quantization=QuantizationSpec(method="none"))
    assert adapted.loaded.quantization == "none" and not adapted.loaded.quantized


# --- derived decisions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, mode, want_mode, want_head",
    [
        ("sft", "auto", "generative", "causal_lm"),
        ("extraction", "auto", "generative", "causal_lm"),
        ("classification", "auto", "head", "sequence_classification"),
        ("relation_classification", "auto", "head", "sequence_classification"),
        ("token_classification", "auto", "head", "token_classification"),
        ("classification", "generative", "generative", "causal_lm"),
    ],
)
def test_task_mode_and_head(kind, mode, want_mode, want_head):
    task = TaskSpec(type=kind, mode=mode)
    assert (task_mode(task), head_kind(task)) == (want_mode, want_head)


def test_benchmark_modes(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps({"name": "r", "model": {"name_or_path": "x/y"}, "data": {"path": "d.jsonl"}}))
    recipe = load_recipe(path, ["quantization.method=int8", "training.learning_rate=1e-3"])
    assert mode_recipe(recipe, "qlora").quantization.method == "int8"
    assert mode_recipe(recipe, "lora").quantization.method == "none"
    full = mode_recipe(recipe, "full")
    assert full.quantization.method == "none" and full.training.learning_rate == pytest.approx(1e-4)
    assert recipe.quantization.method == "int8"  # the recipe itself is never changed
    assert [is_quantized(m) for m in ("none", "nf4", "fp4", "int8", None)] == [False, True, True, True, False]


def _eval(*args: str):
    from click.testing import CliRunner

    from lora_adapt.cli import main

    return CliRunner().invoke(main, ["eval", *args])


def test_eval_refuses_a_different_model_now_at_the_base_path_the_recipe_names(head_run, tmp_path):
    """The issue's reproduction: the recipe's base path now holds another model of the same architecture."""
    base = Path(shutil.copytree(read_run(head_run).base_model["resolved_path"], tmp_path / "base"))
    moved = Path(shutil.copytree(head_run, tmp_path / "run"))
    manifest = A.read_json(moved / A.MANIFEST)
    trained_on = manifest["base_model"]["resolved_path"]
    manifest["base_model"].update(name_or_path=str(base), resolved_path=str(base))
    A.atomic_write_json(moved / A.MANIFEST, manifest)
    recipe = (moved / A.RESOLVED_RECIPE).read_text()
    (moved / A.RESOLVED_RECIPE).write_text(recipe.replace(trained_on, str(base)))
    assert _eval(str(moved)).exit_code == 0  # the same weights at the new path: accepted
    build_tiny_bert(base, seed=7)  # same architecture and config, other weights, same path
    result = _eval(str(moved))
    assert result.exit_code == 2 and "is not the base" in result.output, result.output


def test_eval_on_an_empty_file_a_run_without_weights_or_a_damaged_manifest_says_what_is_wrong(
    head_run, tmp_path
):
    (tmp_path / "empty.jsonl").write_text("")
    result = _eval(str(head_run), "--data", str(tmp_path / "empty.jsonl"))
    assert result.exit_code == 2 and "empty.jsonl: no rows to score" in result.output, result.output
    no_weights = Path(shutil.copytree(head_run, tmp_path / "no-weights"))
    (no_weights / A.ADAPTER_DIR / A.ADAPTER_WEIGHTS).unlink()
    result = _eval(str(no_weights))
    assert (
        result.exit_code == 2 and f"lacks {A.ADAPTER_WEIGHTS}: the run directory is damaged" in result.output
    )
    damaged = Path(shutil.copytree(head_run, tmp_path / "damaged"))
    (damaged / A.MANIFEST).write_text('{"name": ')
    result = _eval(str(damaged))
    assert result.exit_code == 2 and "manifest.json is damaged: not valid JSON" in result.output
    assert "Traceback" not in result.output
