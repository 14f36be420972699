"""Overfitting control: early stopping on any validation metric (head and generative) keeping the best
checkpoint, learning curves and the overfitting warning, the L1 penalty and label smoothing, and several
data sources mixed by weight or ratio."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import read_metrics, run_cli, task_recipe, ticket_rows, write_jsonl
from transformers import TrainerCallback

from lora_adapt import artifacts as A
from lora_adapt.data import load_split_rows
from lora_adapt.evaluation.curves import overfitting_warning
from lora_adapt.evaluation.report import render_report
from lora_adapt.pipeline import run as run_pipeline
from lora_adapt.recipe import load_recipe, recipe_from_dict


class AdapterSnapshots(TrainerCallback):
    """The adapter's weights (as saved) at every validation evaluation, by step."""

    def __init__(self):
        self.by_step: dict[int, dict[str, torch.Tensor]] = {}

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        from peft import get_peft_model_state_dict

        if metrics and "eval_loss" in metrics:
            self.by_step[state.global_step] = {
                k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()
            }


def test_early_stopping_on_f1_restores_the_best_checkpoint_of_mixed_sources(tmp_path, tiny_bert_dir):
    first = write_jsonl(tmp_path / "a.jsonl", ticket_rows(30))
    second = write_jsonl(
        tmp_path / "b.jsonl",
        [
            {"body": r["text"], "topic": r["label"]} for r in ticket_rows(30, offset=20)
        ],  # 10 rows repeat a.jsonl
    )
    sources = [
        {"path": str(first), "weight": 2},
        {"path": str(second), "name": "forum", "weight": 1, "columns": {"text": "body", "label": "topic"}},
    ]
    path = task_recipe(
        tmp_path,
        tiny_bert_dir,
        {"sources": sources, "split": {"validation": 0.25, "test": 0.2}},
        {"type": "classification"},
        training={
            "epochs": 20,
            "eval_steps": 1,
            "learning_rate": 0.5,
            "warmup_ratio": 0.0,  # step 1 already trains (with warmup its learning rate is 0)
            "early_stopping": {"metric": "f1_macro", "patience": 2},
        },
        evaluation={"baselines": []},
    )
    snapshots = AdapterSnapshots()
    result = run_pipeline(load_recipe(path), callbacks=[snapshots], echo=lambda line: None)
    train = result.metrics["train"]
    assert train["stopped_early"] and train["watched_metric"] == "f1_macro"
    best = train["best_step"]
    scores = {h["step"]: h["eval_f1_macro"] for h in train["history"] if "eval_f1_macro" in h}
    assert scores[best] == max(scores.values()) == train["best_metric"]
    assert best < train["global_step"]  # the best is not simply the last evaluation
    from safetensors.torch import load_file

    saved = load_file(str(result.run_dir / A.ADAPTER_DIR / A.ADAPTER_WEIGHTS))
    assert set(saved) == set(snapshots.by_step[best])
    assert all(torch.equal(saved[k], snapshots.by_step[best][k]) for k in saved)
    last = snapshots.by_step[train["global_step"]]
    assert not all(torch.equal(saved[k], last[k]) for k in saved)
    report = (result.run_dir / A.REPORT).read_text()
    assert f"the best validation checkpoint, step {best}" in report
    card = (result.run_dir / A.MODEL_CARD).read_text()
    assert f"saved adapter from step {best}" in card and "adapter dropout 0" in card
    assert (result.run_dir / A.LEARNING_CURVES_PNG).read_bytes()[:4] == b"\x89PNG"
    # the mixed sources: 30 + 20 unique rows, 2:1 -> at most 30 + 15; per-source counts in manifest and report
    sources_seen = result.manifest["data"]["sources"]
    assert sources_seen["a"]["drawn"] == 30 and sources_seen["forum"]["drawn"] == 15
    assert sources_seen["forum"]["duplicates_of_earlier"] == 10
    assert sum(sum(s["final"].values()) for s in sources_seen.values()) == sum(
        result.manifest["data"]["rows"].values()
    )
    assert "| forum | 30 | 10 | 15 |" in report


def test_generative_early_stopping_scores_validation_rows_during_training(tmp_path, tiny_llama_dir):
    data = write_jsonl(tmp_path / "tickets.jsonl", ticket_rows(24))
    recipe = task_recipe(
        tmp_path,
        tiny_llama_dir,
        {"path": str(data), "max_seq_length": 128},
        {"type": "classification", "mode": "generative"},
        training={  # no warmup: the checkpoint of step 1 (the best on a tie) has a trained adapter
            "max_steps": 2,
            "eval_steps": 1,
            "warmup_ratio": 0.0,
            "early_stopping": {"metric": "accuracy", "patience": 3},
        },
        evaluation={"baselines": [], "validation_max_samples": 3, "max_new_tokens": 4},
    )
    run_cli("run", str(recipe))
    metrics = read_metrics(tmp_path)
    evals = [h for h in metrics["train"]["history"] if "eval_loss" in h]
    assert len(evals) == 2 and all("eval_accuracy" in h and "eval_f1_macro" in h for h in evals)
    assert metrics["train"]["watched_metric"] == "accuracy" and metrics["train"]["best_step"] in (1, 2)


def test_overfitting_warning_needs_a_falling_score_and_a_falling_training_loss():
    history = [
        {"step": 1, "loss": 1.0},
        {"step": 2, "eval_loss": 0.8, "eval_f1_macro": 0.60},
        {"step": 3, "loss": 0.5},
        {"step": 4, "eval_loss": 0.6, "eval_f1_macro": 0.80},
        {"step": 5, "loss": 0.2},
        {"step": 6, "eval_loss": 0.9, "eval_f1_macro": 0.70},
        {"step": 7, "loss": 0.05},
    ]
    warning = overfitting_warning(history, "f1_macro")
    assert warning.startswith("validation f1_macro fell from 0.8000 (step 4) to 0.7000 (step 6)")
    assert "set training.early_stopping" in warning
    assert "step 4's (early stopping)" in overfitting_warning(history, "f1_macro", best_step=4)
    assert "rose from 0.6000 (step 4)" in overfitting_warning(history, "loss")
    rising_train = [h if "loss" not in h or h["step"] < 5 else {**h, "loss": 0.9} for h in history]
    assert overfitting_warning(rising_train, "f1_macro") is None  # training loss did not keep falling
    assert overfitting_warning(history[:4], "f1_macro") is None  # the score never fell
    manifest = {"name": "x", "task": {"type": "sft"}, "data": {"rows": {}}}
    report = render_report(manifest, {"train": {"history": history, "overfitting": warning}})
    assert "> **Warning:** validation f1_macro fell" in report


@pytest.fixture(scope="module")
def head_trainer(tmp_path_factory, tiny_bert_dir):
    """A head trainer on tiny BERT with a LoRA adapter, and a batch of its training data."""
    from lora_adapt.modeling import attach_adapter
    from lora_adapt.runtime import load_model_and_data, make_trainer, resolve_runtime

    tmp = tmp_path_factory.mktemp("l1")
    data = write_jsonl(tmp / "tickets.jsonl", ticket_rows(24))
    recipe = load_recipe(
        task_recipe(
            tmp, tiny_bert_dir, {"path": str(data)}, {"type": "classification"}, training={"l1_penalty": 0.01}
        )
    )
    runtime = resolve_runtime(recipe)
    loaded, prepared = load_model_and_data(recipe, runtime, echo=lambda line: None)
    model = attach_adapter(loaded, recipe.adapter)
    trainer = make_trainer(
        recipe, runtime, model, loaded.tokenizer, prepared, tmp / "ckpt", [], echo=lambda line: None
    )
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer, model, batch


def test_the_l1_penalty_adds_its_term_to_the_training_loss_only(head_trainer):
    trainer, model, batch = head_trainer
    adapter = [p for n, p in model.named_parameters() if "lora_A" in n or "lora_B" in n]
    expected = 0.01 * sum(float(p.detach().abs().sum()) for p in adapter)
    assert expected > 0
    model.train()
    torch.manual_seed(0)  # the same dropout masks for both losses
    penalised = float(trainer.compute_loss(model, dict(batch)))
    trainer.l1_penalty = 0.0
    torch.manual_seed(0)
    plain = float(trainer.compute_loss(model, dict(batch)))
    assert penalised - plain == pytest.approx(expected, rel=1e-4)
    trainer.l1_penalty = 0.01
    model.eval()
    evaluated = float(trainer.compute_loss(model, dict(batch)))
    trainer.l1_penalty = 0.0
    assert float(trainer.compute_loss(model, dict(batch))) == pytest.approx(
        evaluated, rel=1e-6
    )  # not in eval
    trainer.l1_penalty = 0.01
    model.train()
    trainer.loss_is_scaled_for_ga, trainer.current_gradient_accumulation_steps = True, 4
    try:  # a loss normalised over the accumulated batch gets a quarter of the term per micro-batch
        assert float(trainer.l1_term(model)) == pytest.approx(expected / 4, rel=1e-4)
    finally:
        trainer.loss_is_scaled_for_ga = None


def test_label_smoothing_reaches_the_trainer(tmp_path):
    from lora_adapt.training import Precision, common_args

    recipe = recipe_from_dict(
        {
            "name": "x",
            "model": {"name_or_path": "m"},
            "data": {"path": "d.jsonl"},
            "training": {"label_smoothing": 0.1},
        },
        base_dir=tmp_path,
    )
    args = common_args(recipe.training, Precision(False, False), tmp_path, has_validation=True, device="cpu")
    assert args["label_smoothing_factor"] == 0.1


def test_mixing_weights_and_ratios_give_the_expected_per_source_counts(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", ticket_rows(90))
    b = write_jsonl(tmp_path / "b.jsonl", ticket_rows(60, offset=1000))
    base = {"name": "m", "task": {"type": "classification"}, "model": {"name_or_path": "m"}}
    split = {"validation": 0.0, "test": 0.0}

    def counts(sources, **mixing):
        data = {"sources": sources, "split": split, **({"mixing": mixing} if mixing else {})}
        _, stats = load_split_rows(*_specs({**base, "data": data}))
        return {name: s["drawn"] for name, s in stats["sources"].items()}

    assert counts([{"path": str(a), "weight": 1}, {"path": str(b), "weight": 1}]) == {"a": 60, "b": 60}
    assert counts([{"path": str(a), "weight": 3}, {"path": str(b), "weight": 1}], rows=100) == {
        "a": 75,
        "b": 25,
    }
    assert counts([{"path": str(a), "ratio": 0.5}, {"path": str(b)}]) == {"a": 45, "b": 60}
    with pytest.raises(Exception, match="has 60 usable rows but its weight asks for 70"):
        counts([{"path": str(a), "weight": 1}, {"path": str(b), "weight": 1}], rows=140)


def _specs(raw):
    recipe = recipe_from_dict(raw)
    return recipe.data, recipe.task


def test_run_dirs_carry_learning_curves():
    assert A.LEARNING_CURVES_PNG in A.RUN_FILES
    assert json.dumps(sorted(A.RUN_FILES))  # the contract stays a plain set of names
