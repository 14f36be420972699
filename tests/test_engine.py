"""The engine end to end: a recipe becomes a trained adapter, with the invariants that make it trustworthy."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from helpers import TOPICS, cli, instruction_rows, sft_recipe, write_jsonl

from lora_adapt import artifacts as A
from lora_adapt.cli import main
from lora_adapt.recipe import load_recipe


def chat_rows(n: int = 40) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is ticket {i} about?"},
                {"role": "assistant", "content": f"It is about {TOPICS[i % len(TOPICS)]}."},
            ]
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def lora_run(tiny_llama_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora-run")
    data = write_jsonl(tmp / "train.jsonl", instruction_rows())
    recipe = sft_recipe(tmp, tiny_llama_dir, data)
    result = cli("run", str(recipe))
    assert result.exit_code == 0, result.output
    return tmp / "runs" / "tiny", result.output


def test_run_writes_exactly_the_contracted_files(lora_run):
    run_dir, _ = lora_run
    assert {p.name for p in run_dir.iterdir()} == set(A.RUN_FILES)
    adapter = {p.name for p in (run_dir / A.ADAPTER_DIR).iterdir()}
    assert {A.ADAPTER_WEIGHTS, A.ADAPTER_CONFIG, "tokenizer.json", "tokenizer_config.json"} <= adapter
    assert not A.in_progress_dir(run_dir).exists()


def test_manifest_and_metrics_record_the_run(lora_run, tiny_llama_dir):
    run_dir, output = lora_run
    manifest = json.loads((run_dir / A.MANIFEST).read_text())
    assert manifest["base_model"]["resolved_path"] == str(tiny_llama_dir)
    assert manifest["base_model"]["model_type"] == "llama"
    assert manifest["adapter"]["trainable_params"] > 0
    assert 0 < manifest["adapter"]["trainable_share"] < 1
    assert manifest["versions"]["torch"] and manifest["versions"]["peft"]
    assert set(manifest["data"]["rows"]) == {"train", "validation", "test"}
    assert manifest["seed"] == 42 and manifest["timings"]["total_s"] > 0
    metrics = json.loads((run_dir / A.METRICS).read_text())
    assert metrics["train"]["global_step"] == 6
    assert any("loss" in h for h in metrics["train"]["history"])
    for split in ("validation", "test"):
        assert set(metrics[split]) == {"before", "after"}
        assert metrics[split]["after"]["loss"] < metrics[split]["before"]["loss"]
    assert "trainable" in output and "perplexity" in output
    # one compact line per logging step (logging_steps 1, 6 steps), numbers as numbers, no raw log dicts
    steps = [line for line in output.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in steps] == [f"{i}/6" for i in range(1, 7)]
    assert all(" loss " in line and " lr " in line for line in steps) and "{'loss'" not in output
    card = (run_dir / A.MODEL_CARD).read_text()
    assert card.startswith("---") and "library_name: peft" in card


def test_adapter_reloads_and_changes_the_model(lora_run, tiny_llama_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run_dir, _ = lora_run
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    ids = torch.tensor([[1, 40, 50, 60, 70, 80]])
    with torch.no_grad():
        base_logits = base(input_ids=ids).logits
    adapted = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_llama_dir), run_dir / A.ADAPTER_DIR
    )
    again = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_llama_dir), run_dir / A.ADAPTER_DIR
    )
    with torch.no_grad():
        logits = adapted(input_ids=ids).logits
        assert torch.equal(logits, again(input_ids=ids).logits)
    assert not torch.allclose(logits, base_logits), "the trained adapter must change the model's output"


def test_training_changes_only_adapter_weights(tiny_llama_dir):
    """Base weights stay bit-identical, every LoRA matrix moves, and loss falls on a repeated batch."""
    from lora_adapt.modeling import attach_adapter, load_model
    from lora_adapt.recipe.schema import AdapterSpec, ModelSpec, QuantizationSpec

    loaded = load_model(ModelSpec(name_or_path=str(tiny_llama_dir)), QuantizationSpec())
    model = attach_adapter(loaded, AdapterSpec(rank=4, alpha=8, dropout=0.0))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = torch.tensor([[1, 40, 50, 60, 70, 80, 90, 100]])
    losses = []
    for _ in range(20):
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.8, losses  # a random tiny model caps how far loss can fall
    for name, param in model.named_parameters():
        if "lora_" in name:
            assert not torch.equal(param, before[name]), f"{name} did not change"
        else:
            assert torch.equal(param, before[name]), f"base weight {name} changed"


def test_qlora_nf4_run_trains_on_4bit_layers(tiny_llama_dir, tmp_path):
    import bitsandbytes as bnb
    from transformers import TrainerCallback

    from lora_adapt.pipeline import run
    from lora_adapt.recipe import load_recipe

    class FourBitLayers(TrainerCallback):
        seen: dict[str, int] = {}

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
            states = [
                m.weight.quant_state for m in layers if getattr(m.weight, "quant_state", None) is not None
            ]
            FourBitLayers.seen = {
                "layers": len(layers),
                "with_state": len(states),
                "nf4": sum(state.quant_type == "nf4" for state in states),
            }

    data = write_jsonl(tmp_path / "train.jsonl", instruction_rows(32))
    recipe = sft_recipe(
        tmp_path, tiny_llama_dir, data, quantization={"method": "nf4"}, training={"max_steps": 3}
    )
    result = run(load_recipe(recipe), callbacks=[FourBitLayers()], echo=lambda _: None)
    # every decoder linear of the tiny Llama (2 layers x 7 projections) is a 4-bit NF4 layer with its quant state
    assert FourBitLayers.seen == {"layers": 14, "with_state": 14, "nf4": 14}
    assert result.manifest["quantization"]["method"] == "nf4"
    assert (tmp_path / "runs" / "tiny" / A.ADAPTER_DIR / A.ADAPTER_WEIGHTS).stat().st_size > 0


def test_chat_run_on_qwen2_with_its_template(tiny_qwen2_dir, tmp_path):
    data = write_jsonl(tmp_path / "chats.jsonl", chat_rows())
    recipe = sft_recipe(tmp_path, tiny_qwen2_dir, data, training={"max_steps": 3})
    result = cli("run", str(recipe))
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "runs" / "tiny" / A.MANIFEST).read_text())
    assert manifest["base_model"]["model_type"] == "qwen2"
    assert manifest["data"]["stats"]["format"] == "chat"


def test_finished_run_is_not_overwritten(lora_run):
    run_dir, _ = lora_run
    recipe = run_dir.parent.parent / "recipe.yaml"
    stamp = (run_dir / A.MANIFEST).read_text()
    result = CliRunner().invoke(main, ["run", str(recipe)])
    assert result.exit_code == 2
    assert "already exists" in result.output and "--overwrite" in result.output
    assert (run_dir / A.MANIFEST).read_text() == stamp


def test_resume_after_interruption_reaches_the_same_final_step(tiny_llama_dir, tmp_path):
    from transformers import TrainerCallback

    from lora_adapt.pipeline import run

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                raise KeyboardInterrupt

    data = write_jsonl(tmp_path / "train.jsonl", instruction_rows(32))
    recipe = load_recipe(
        sft_recipe(tmp_path, tiny_llama_dir, data, training={"max_steps": 6, "save_steps": 2})
    )
    final = tmp_path / "runs" / "tiny"
    with pytest.raises(KeyboardInterrupt):
        run(recipe, callbacks=[Interrupt()], echo=lambda s: None)
    assert not final.exists(), "an interrupted run must not look finished"
    stage = A.in_progress_dir(final)
    assert (stage / A.CHECKPOINTS_DIR / "checkpoint-4").is_dir()
    result = run(recipe, resume=True, echo=lambda s: None)
    assert result.metrics["train"]["global_step"] == 6
    assert json.loads((final / A.METRICS).read_text())["train"]["global_step"] == 6
    assert not stage.exists() and not (final / A.CHECKPOINTS_DIR).exists()


def test_dry_run_writes_nothing(tiny_llama_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", instruction_rows(16))
    recipe = sft_recipe(tmp_path, tiny_llama_dir, data)
    result = cli("run", str(recipe), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output
    assert not (tmp_path / "runs").exists()


def test_merge_at_the_end_of_a_run_is_verified(tiny_llama_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", instruction_rows(24))
    recipe = sft_recipe(
        tmp_path,
        tiny_llama_dir,
        data,
        training={"max_steps": 2},
        output={"merge": True, "merge_dtype": "fp32"},
    )
    result = cli("run", str(recipe))
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "tiny"
    assert {p.name for p in run_dir.iterdir()} == set(A.RUN_FILES) | {A.MERGED_DIR}
    report = json.loads((run_dir / A.MERGED_DIR / A.MERGE_VERIFICATION).read_text())
    assert report["passed"] is True
    assert report["merge"]["max_logit_diff"] < 1e-4


def test_early_stopping_keeps_the_best_adapter(tiny_llama_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", instruction_rows(40))
    recipe = sft_recipe(
        tmp_path,
        tiny_llama_dir,
        data,
        training={
            "max_steps": 12,
            "eval_steps": 2,
            "save_steps": None,
            "learning_rate": 0.3,
            "early_stopping": {"patience": 1},
        },
    )
    result = cli("run", str(recipe))
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "runs" / "tiny" / A.METRICS).read_text())
    evals = [h["eval_loss"] for h in metrics["train"]["history"] if "eval_loss" in h]
    assert metrics["train"]["best_metric"] == pytest.approx(min(evals), abs=1e-6)
    # the adapter that was saved is the best one, not the last one
    assert metrics["validation"]["after"]["loss"] == pytest.approx(min(evals), abs=1e-4)


def test_progress_lines_are_aligned_and_numeric():
    from lora_adapt.training.progress import log_line

    a = log_line("step", 5, 120, 0.5, {"loss": 0.41234, "learning_rate": 2e-4, "grad_norm": 1.5}, eta=62)
    b = log_line("eval", 40, 120, 1.0, {"eval_loss": 0.33, "eval_runtime": 3.1, "epoch": 1.0}, eta=None)
    assert a == "step    5/120  epoch 0.50  loss 0.4123  lr 2.00e-04  grad 1.5000  left 0:01:02"
    assert b == "eval   40/120  epoch 1.00  eval_loss 0.3300"
    assert a.index("epoch") == b.index("epoch")  # columns line up across lines
