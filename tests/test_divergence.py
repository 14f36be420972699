"""Never report a diverged run as a success: a NaN loss stops training at once, a loss that ends above
where it started (or above chance) fails the run loudly unless allowed, and non-finite recipe numbers are
refused at validate."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import cli, instruction_rows, sft_recipe, task_recipe, ticket_rows, write_jsonl
from transformers import TrainerCallback

from lora_adapt import artifacts as A
from lora_adapt.errors import TrainingDivergedError
from lora_adapt.pipeline import run
from lora_adapt.recipe import load_recipe
from lora_adapt.training.divergence import chance_loss, describe_rise, loss_rise


class PoisonAdapter(TrainerCallback):
    """Turns one LoRA weight into NaN before step ``at`` (a NaN loss from then on); records the last step."""

    def __init__(self, at: int):
        self.at, self.last_step = at, 0

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.at:
            with torch.no_grad():
                next(p for n, p in model.named_parameters() if "lora_A" in n).fill_(float("nan"))

    def on_step_end(self, args, state, control, **kwargs):
        self.last_step = state.global_step


def test_a_nan_loss_stops_training_at_that_step_and_saves_nothing_after_it(tiny_llama_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", instruction_rows(48))
    path = sft_recipe(tmp_path, tiny_llama_dir, data, training={"max_steps": 12, "save_steps": 2})
    recipe = load_recipe(path)
    poison = PoisonAdapter(at=4)
    with pytest.raises(TrainingDivergedError) as err:
        run(recipe, callbacks=[poison], echo=lambda line: None)
    assert "training diverged at step 4: the gradient norm is nan" in err.value.message
    assert "training.learning_rate" in err.value.message and err.value.exit_code == 1
    assert poison.last_step == 4, "training must stop at the step that went non-finite"
    checkpoints = A.in_progress_dir(tmp_path / "runs" / "tiny") / A.CHECKPOINTS_DIR
    assert (checkpoints / "checkpoint-2").is_dir() and not (checkpoints / "checkpoint-4").exists()
    assert not (tmp_path / "runs" / "tiny").exists(), "a diverged run never looks finished"
    record_path = checkpoints.parent / A.DIVERGENCE
    assert str(record_path) in err.value.message and "checkpoint-2" in err.value.message
    record = A.read_json(record_path)  # kept for diagnosis: where, what, the losses up to there
    assert record["step"] == 4 and record["checkpoints_kept"] == ["checkpoint-2"]
    assert record["likely_causes"] and [h["step"] for h in record["history"] if "loss" in h][:2] == [1, 2]
    assert "NaN" not in record_path.read_text(), "strict JSON: non-finite values written as strings"
    again = cli("run", str(path))  # a plain rerun keeps it and says why it stopped
    assert again.exit_code == 2, again.output
    assert "training diverged at step 4" in again.output and "--overwrite" in again.output


@pytest.fixture(scope="module")
def exploding(tiny_bert_dir, tmp_path_factory):
    """A 3-class head trained at learning rate 0.9 without clipping: the loss rises from ln 3 to tens."""
    tmp = tmp_path_factory.mktemp("exploding")
    data = write_jsonl(tmp / "tickets.jsonl", ticket_rows(60))
    recipe = task_recipe(
        tmp,
        tiny_bert_dir,
        {"path": str(data), "max_seq_length": 64},
        {"type": "classification"},
        training={
            "max_steps": 10,
            "learning_rate": 0.9,
            "max_grad_norm": 0.0,
            "warmup_ratio": 0.0,
            "logging_steps": 2,
            "batch_size": 4,
        },
        evaluation={"baselines": ["majority"]},
    )
    return recipe, cli("run", str(recipe))


def test_a_loss_that_ends_above_where_it_started_fails_the_run_loudly(exploding):
    recipe, result = exploding
    assert result.exit_code == 1, result.output
    assert "WARNING: training diverged" in result.output  # right after training, before evaluation
    assert "error: training diverged: the final training loss" in result.output
    assert "above the chance loss and the starting loss" in result.output
    assert "training.learning_rate = 0.9" in result.output and "training.max_grad_norm = 0" in result.output
    assert "training.divergence.allow" in result.output
    final = recipe.parent / "runs" / "task"
    divergence = A.read_json(final / A.METRICS)["train"]["divergence"]
    assert divergence["chance_loss"] == pytest.approx(math.log(3), abs=1e-6)
    assert divergence["final"]["loss"] > divergence["start"]["loss"] * 1.1 and divergence["rose_at_step"] >= 2
    report = (final / A.REPORT).read_text()
    assert "## Warning: training diverged (training loss check)" in report and "Likely causes:" in report
    assert "Training diverged" in (final / A.MODEL_CARD).read_text()


def test_a_run_refused_for_divergence_is_not_used_by_other_commands(exploding):
    recipe, _ = exploding
    final = recipe.parent / "runs" / "task"
    for command in (
        ["eval", str(final)],
        ["export", str(final), "--target", "peft", "--out", str(final.parent / "x")],
    ):
        result = cli(*command)
        assert result.exit_code == 2 and "diverged" in result.output, result.output
    assert not (final.parent / "x").exists()


def test_allowing_divergence_keeps_the_warning_and_exits_0(exploding):
    recipe, _ = exploding
    result = cli("run", str(recipe), "--overwrite", "--set", "training.divergence.allow=true")
    assert result.exit_code == 0, result.output
    assert "WARNING: training diverged" in result.output and "error:" not in result.output
    report = (recipe.parent / "runs" / "task" / A.REPORT).read_text()
    assert "kept: training.divergence.allow is true" in report


def test_loss_check_tolerates_noise_and_names_the_step_it_rose():
    steady = [{"step": 1, "loss": 1.09}, {"step": 10, "loss": 1.10}, {"step": 20, "loss": 1.12}]
    assert loss_rise(steady, chance=math.log(3), margin=0.1) is None  # within 10 %: noise
    rising = [
        {"step": 1, "loss": 1.1},
        {"step": 5, "loss": 0.9},
        {"step": 10, "loss": 23.5},
        {"step": 15, "loss": 1.68},
    ]
    rise = loss_rise(rising, chance=math.log(3), margin=0.1)
    assert rise["rose_at_step"] == 10 and rise["peak"] == {"step": 10, "loss": 23.5}
    assert rise["above"] == ["chance loss", "starting loss"]
    assert loss_rise(rising[:1], chance=None, margin=0.1) is None
    assert (
        chance_loss("causal_lm", None, False) is None
        and chance_loss("sequence_classification", ("a", "b"), True) is None
    )


def test_non_finite_numbers_in_a_recipe_are_errors_at_validate(tmp_path, tiny_llama_dir):
    recipe = sft_recipe(
        tmp_path,
        tiny_llama_dir,
        tmp_path / "train.jsonl",
        adapter={"alpha": float("inf")},
        training={"epochs": float("inf"), "learning_rate": float("nan")},
    )
    text = recipe.read_text()
    assert ".inf" in text and ".nan" in text  # written as YAML's non-finite literals
    result = cli("validate", str(recipe))
    assert result.exit_code == 2, result.output
    for key in ("adapter.alpha", "training.epochs", "training.learning_rate"):
        assert f"'{key}'" in result.output and "finite" in result.output, result.output


def test_a_logged_nan_loss_trips_the_guard_and_is_logged_as_it_is(tmp_path):
    from transformers import TrainerControl, TrainerState

    from lora_adapt.recipe.schema import TrainingSpec
    from lora_adapt.training.config import Precision, common_args
    from lora_adapt.training.divergence import DivergenceGuard

    guard, control, state = DivergenceGuard(), TrainerControl(), TrainerState(global_step=7)
    guard.on_log(None, state, control, logs={"loss": 0.9, "grad_norm": 1.0})
    assert guard.tripped is None and not control.should_training_stop
    guard.on_log(None, state, control, logs={"loss": float("nan"), "grad_norm": 1.0})
    assert guard.tripped == {"step": 7, "what": "training loss", "value": "nan"}
    assert control.should_training_stop
    control.should_save = True
    guard.on_step_end(None, state, control)
    assert not control.should_save, "no checkpoint after a non-finite step"
    # transformers' order within a step: on_step_end (which may ask for a save), then on_log, then the save
    guard, control = DivergenceGuard(), TrainerControl()
    control.should_save = True
    guard.on_step_end(None, state, control)
    guard.on_log(None, state, control, logs={"loss": float("nan")})
    assert not control.should_save and not control.should_evaluate, "the tripping step is not checkpointed"
    args = common_args(
        TrainingSpec(), Precision(bf16=False, fp16=False), tmp_path, has_validation=False, device="cpu"
    )
    assert args["logging_nan_inf_filter"] is False  # transformers would log the mean of earlier losses


class BestAtStepTwoThenRising(TrainerCallback):
    """Validation says step 2 is best (early stopping keeps its checkpoint); the training loss logged after
    step 2 is made to rise far above the start - a loss the kept model never had."""

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics["eval_loss"] = 0.1 if state.global_step == 2 else 5.0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" in (logs or {}) and state.global_step > 2:
            state.log_history[-1]["loss"] = 50.0  # the record transformers appended before calling us


def test_the_loss_check_judges_the_checkpoint_early_stopping_kept_not_the_last_step(tiny_llama_dir, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", instruction_rows(32))
    training = {"eval_steps": 2, "save_steps": 2, "early_stopping": {"patience": 2}}
    recipe = load_recipe(sft_recipe(tmp_path, tiny_llama_dir, data, training=training))
    result = run(recipe, callbacks=[BestAtStepTwoThenRising()], echo=lambda line: None)
    train = result.metrics["train"]
    assert train["best_step"] == 2 and train["final_loss"] == 50.0  # the discarded steps rose...
    assert train["divergence"] is None  # ...the kept model's loss did not: no TrainingDivergedError
    history = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.9}, {"step": 4, "loss": 50.0}]
    assert loss_rise(history, chance=None, margin=0.1)["final"] == {"step": 4, "loss": 50.0}
    assert loss_rise(history, chance=None, margin=0.1, kept_step=3) is None
    kept_rose = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 9.0}, {"step": 4, "loss": 1.0}]
    rise = loss_rise(kept_rose, chance=None, margin=0.1, kept_step=2)  # the kept model's loss rose: flagged
    assert rise["final"] == {"step": 2, "loss": 9.0} and rise["kept_step"] == 2
    assert "the training loss of the kept checkpoint (step 2" in describe_rise({**rise, "likely_causes": []})
