"""`lora-adapt sweep` on a tiny BERT: grid, random and bayes budgets, pruning, failures, resuming, the
outputs, and the best recipe reproducing its validation score."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import optuna
import pytest
from helpers import instruction_rows, run_cli, sft_recipe, sweep_recipe, write_jsonl

import lora_adapt.sweep as sweep_module
from lora_adapt import artifacts as A
from lora_adapt.pipeline import run as run_pipeline
from lora_adapt.recipe import load_recipe
from lora_adapt.sweep import run_sweep
from lora_adapt.sweep.space import grid_params
from lora_adapt.sweep.study import counted, fail_dead_trials, mark_process, open_study

GRID = {
    "method": "grid",
    "space": {"training.learning_rate": {"values": [1e-3, 5e-2]}, "adapter.rank": {"values": [2, 4]}},
    "budget": {"trials": 4},
    "pruning": {"method": "none"},
}


def trials_of(folder, name="swept"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / A.SWEEP_STUDY}").trials


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory, tiny_bert_dir):
    tmp = tmp_path_factory.mktemp("grid")
    recipe = sweep_recipe(tmp, tiny_bert_dir, GRID)
    output = run_cli("sweep", str(recipe)).output
    return tmp, recipe, output


def test_grid_visits_every_point_once(grid_sweep):
    tmp, recipe, output = grid_sweep
    trials = trials_of(tmp / "sweep")
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    visited = sorted((t.params["training.learning_rate"], t.params["adapter.rank"]) for t in trials)
    assert visited == [(1e-3, 2), (1e-3, 4), (5e-2, 2), (5e-2, 4)]
    assert "sweep written:" in output


def test_a_sweep_writes_trials_tables_plots_and_the_best_recipe(grid_sweep):
    tmp, _, _ = grid_sweep
    folder = tmp / "sweep"
    names = {p.name for p in folder.iterdir()}
    expected = {A.SWEEP_STUDY, A.SWEEP_TRIALS_DIR, A.SWEEP_TABLE_CSV, A.SWEEP_TABLE_MD, A.SWEEP_BEST_RECIPE}
    assert expected | {A.SWEEP_SUMMARY, A.SWEEP_REPORT, *A.SWEEP_PLOTS} == names
    for plot in A.SWEEP_PLOTS:
        assert (folder / plot).read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader((folder / A.SWEEP_TABLE_CSV).open()))
    assert [int(r["trial"]) for r in rows] == [0, 1, 2, 3] and {r["state"] for r in rows} == {"COMPLETE"}
    assert all(int(r["steps"]) == 2 and int(r["evaluations"]) == 2 for r in rows)
    summary = json.loads((folder / A.SWEEP_SUMMARY).read_text())
    best = summary["best"]
    assert summary["objective"] == {"metric": "f1_macro", "direction": "maximize", "split": "validation"}
    assert best["validation"] == max(float(r["value"]) for r in rows)
    assert best["test"]["rows"] > 0 and "f1_macro" in best["test"]  # scored once, beside validation
    assert "(best)" in (folder / A.SWEEP_TABLE_MD).read_text()
    assert summary["cost"]["steps_total"] == 8 and summary["cost"]["before_first_step_first_s"] > 0
    trial_dir = folder / A.SWEEP_TRIALS_DIR / "trial-0000"
    assert {p.name for p in trial_dir.iterdir()} == set(A.RUN_FILES) | {A.CONFUSION_PNG}
    metrics = json.loads((trial_dir / A.METRICS).read_text())
    assert metrics["evaluation"]["split"] == "validation" and metrics["baselines"] == {}
    assert "test" not in metrics and "validation" not in metrics  # no loss pass: the objective is f1_macro
    # the Trainer's compute_metrics and the final evaluation score the validation split alike
    last_eval = [h for h in metrics["train"]["history"] if "eval_f1_macro" in h][-1]
    assert last_eval["eval_f1_macro"] == pytest.approx(metrics["task"]["f1_macro"], abs=1e-6)


def test_the_best_recipe_run_again_reproduces_its_validation_score(grid_sweep):
    tmp, _, _ = grid_sweep
    folder = tmp / "sweep"
    best = json.loads((folder / A.SWEEP_SUMMARY).read_text())["best"]
    recipe = load_recipe(folder / A.SWEEP_BEST_RECIPE, [f"output.dir={tmp / 'again'}"])
    assert recipe.sweep is None and recipe.name == "swept-best"
    for path, value in best["values"].items():
        section, key = path.split(".")
        assert getattr(getattr(recipe, section), key) == value
    rerun = run_pipeline(recipe, score_split="validation", echo=lambda line: None)  # a fresh load
    assert rerun.metrics["task"]["f1_macro"] == pytest.approx(best["validation"], abs=1e-9)


def test_random_and_bayes_honour_the_budget(tmp_path, tiny_bert_dir):
    rate = {"training.learning_rate": {"low": 1e-3, "high": 5e-2, "log": True}}
    sweep = {"method": "random", "space": rate, "budget": {"trials": 2}, "pruning": {"method": "none"}}
    summary = run_sweep(
        load_recipe(sweep_recipe(tmp_path, tiny_bert_dir, sweep)), echo=lambda line: None
    ).summary
    assert len(trials_of(tmp_path / "sweep")) == 2 and summary["counts"] == {"COMPLETE": 2}
    bayes = {
        "method": "bayes",
        "startup_trials": 1,
        "space": rate,
        "dir": str(tmp_path / "bayes"),
        "budget": {"trials": 2},
    }
    run_cli("sweep", str(sweep_recipe(tmp_path, tiny_bert_dir, bayes)), "--trials", "3")  # --trials overrides
    trials = trials_of(tmp_path / "bayes")
    assert len(trials) == 3 and len({t.params["training.learning_rate"] for t in trials}) == 3


def test_a_failed_trial_is_recorded_with_its_reason_and_the_sweep_goes_on(tmp_path, tiny_bert_dir):
    models = {"values": [str(tiny_bert_dir), "nobody/missing-model"]}  # offline: the second cannot load
    sweep = {"method": "grid", "space": {"model.name_or_path": models}, "budget": {"trials": 2}}
    summary = run_sweep(
        load_recipe(sweep_recipe(tmp_path, tiny_bert_dir, sweep)), echo=lambda line: None
    ).summary
    trials = {t.params["model.name_or_path"]: t for t in trials_of(tmp_path / "sweep")}
    failed = trials["nobody/missing-model"]
    assert failed.state.name == "FAIL" and failed.user_attrs["failure"].startswith("ModelLoadError")
    assert trials[str(tiny_bert_dir)].state.name == "COMPLETE" and summary["counts"] == {
        "COMPLETE": 1,
        "FAIL": 1,
    }
    rows = list(csv.DictReader((tmp_path / "sweep" / A.SWEEP_TABLE_CSV).open()))
    assert any(r["state"] == "FAIL" and r["reason"].startswith("ModelLoadError") for r in rows)
    assert not list((tmp_path / "sweep" / A.SWEEP_TRIALS_DIR).glob("*.incomplete"))


def test_a_hopeless_trial_is_pruned_early(tmp_path, tiny_bert_dir):
    sweep = {
        "method": "grid",
        "space": {"training.learning_rate": {"values": [0.9, 1e-6]}},
        "objective": {"metric": "loss"},
        "pruning": {"method": "median", "startup_trials": 1, "warmup_evaluations": 0},
        "budget": {"trials": 2},
    }
    recipe = load_recipe(
        sweep_recipe(tmp_path, tiny_bert_dir, sweep, training={"max_steps": 4, "warmup_ratio": 0.0})
    )
    assert [p["training.learning_rate"] for p in grid_params(recipe.sweep)] == [
        1e-6,
        0.9,
    ]  # the bad one second
    best = run_sweep(recipe, echo=lambda line: None).summary["best"]
    assert best["test"]["loss"] > 0 and "f1_macro" in best["test"]  # the objective's test score, once
    first, second = trials_of(tmp_path / "sweep")
    assert first.state.name == "COMPLETE" and second.state.name == "PRUNED"
    assert second.user_attrs["cost"]["steps"] < 4 and "pruned at evaluation" in second.user_attrs["pruned"]
    assert not (tmp_path / "sweep" / A.SWEEP_TRIALS_DIR / "trial-0001").exists()
    assert not (tmp_path / "sweep" / A.SWEEP_TRIALS_DIR / "trial-0001.incomplete").exists()


def test_an_interrupted_sweep_resumes_without_redoing_finished_trials(tmp_path, tiny_bert_dir, monkeypatch):
    sweep = {
        **GRID,
        "space": {"training.learning_rate": {"values": [1e-3, 5e-3, 2e-2]}},
        "budget": {"trials": 3},
    }
    recipe = load_recipe(sweep_recipe(tmp_path, tiny_bert_dir, sweep))
    real, calls = sweep_module.run_trial, []

    def interrupted_second(trial, *args, **kwargs):
        calls.append(trial.number)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(trial, *args, **kwargs)

    monkeypatch.setattr(sweep_module, "run_trial", interrupted_second)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(recipe, echo=lambda line: None)
    first_run = (tmp_path / "sweep" / A.SWEEP_TRIALS_DIR / "trial-0000" / A.METRICS).stat().st_mtime_ns
    calls.clear()
    monkeypatch.setattr(
        sweep_module, "run_trial", lambda trial, *a, **k: calls.append(trial.number) or real(trial, *a, **k)
    )
    summary = run_sweep(recipe, echo=lambda line: None).summary
    trials = trials_of(tmp_path / "sweep")
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert calls == [2, 3]  # the interrupted point again, then the last one; trial 0 is not redone
    assert trials[3].params == trials[1].params  # the interrupted trial's values were queued again
    assert summary["counts"] == {"COMPLETE": 3, "INTERRUPTED": 1}
    assert (
        tmp_path / "sweep" / A.SWEEP_TRIALS_DIR / "trial-0000" / A.METRICS
    ).stat().st_mtime_ns == first_run
    rates = sorted(t.params["training.learning_rate"] for t in trials if t.state.name == "COMPLETE")
    assert rates == [1e-3, 5e-3, 2e-2]


def test_a_trial_whose_process_died_is_failed_and_queued_again(tmp_path):
    recipe = load_recipe(sweep_recipe(tmp_path, tmp_path, {"space": {"adapter.rank": {"values": [2, 4]}}}))
    study = open_study(recipe.sweep, tmp_path / "sweep", "swept", "maximize")
    trial = study.ask()
    trial.suggest_categorical("adapter.rank", [2, 4])
    mark_process(trial)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    trial.set_user_attr("pid", int(dead.stdout))  # a process that has exited
    assert counted(study) == 1
    assert fail_dead_trials(study) == 1
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    assert states == ["FAIL", "WAITING"] and counted(study) == 0
    assert study.trials[1].system_attrs["fixed_params"] == trial.params


def test_a_nan_loss_or_out_of_memory_fails_the_trial_with_its_reason():
    from types import SimpleNamespace

    from lora_adapt.errors import DataError
    from lora_adapt.sweep.trial import TrialCost, TrialFailed, TrialReporter, _as_failure, _diverged

    reporter = TrialReporter(trial=None, metric="f1_macro", cost=TrialCost())
    with pytest.raises(TrialFailed, match="the training loss became nan at step 7"):
        reporter.on_log(None, SimpleNamespace(global_step=7), None, logs={"loss": float("nan")})
    reporter.on_log(None, SimpleNamespace(global_step=8), None, logs={"loss": 0.5})  # a finite loss goes on
    with pytest.raises(TrialFailed, match="the validation loss became nan at step 9"):  # before any report
        reporter.on_evaluate(
            None,
            SimpleNamespace(global_step=9),
            None,
            metrics={"eval_loss": float("nan"), "eval_f1_macro": 0.5},
        )
    assert reporter.cost.evaluations == 0
    assert "diverged (inf last logged" in _diverged({"train": {"final_loss": float("inf"), "mean_loss": 2.0}})
    assert _diverged({"train": {"final_loss": 0.1, "mean_loss": 0.2}}) is None
    assert str(_as_failure(MemoryError("no room"))).startswith("out of memory")
    assert str(_as_failure(RuntimeError("CUDA out of memory. Tried to allocate"))).startswith("out of memory")
    assert str(_as_failure(DataError("empty", hint="x"))) == "DataError: empty"
    bug = ValueError("a bug")
    assert _as_failure(bug) is bug  # anything else stops the sweep


def test_an_sft_sweep_minimises_the_validation_loss_and_scores_the_test_loss(tmp_path, tiny_llama_dir):
    data = write_jsonl(tmp_path / "train.jsonl", instruction_rows(32))
    sweep = {
        "dir": str(tmp_path / "sweep"),
        "method": "grid",
        "space": {"training.learning_rate": {"values": [1e-4, 1e-2]}},
        "budget": {"trials": 2},
        "pruning": {"method": "none"},
    }
    path = sft_recipe(tmp_path, tiny_llama_dir, data, training={"max_steps": 2, "eval_steps": 1}, sweep=sweep)
    summary = run_sweep(load_recipe(path), echo=lambda line: None).summary
    assert summary["objective"] == {"metric": "loss", "direction": "minimize", "split": "validation"}
    values = [t.value for t in trials_of(tmp_path / "sweep", "tiny")]
    assert summary["best"]["validation"] == min(values)
    assert (
        set(summary["best"]["test"]) == {"rows", "loss", "perplexity"} and summary["best"]["test"]["loss"] > 0
    )


def test_a_sweep_folder_refuses_a_study_made_with_other_settings(tmp_path, tiny_bert_dir):
    from lora_adapt.errors import UsageError
    from lora_adapt.sweep.study import searched_settings

    recipe = load_recipe(sweep_recipe(tmp_path, tiny_bert_dir, GRID))
    settings = searched_settings(recipe.model_dump(mode="json"))
    open_study(recipe.sweep, tmp_path / "s", "swept", "maximize", settings)
    more = recipe.model_copy(update={"sweep": recipe.sweep.model_copy(update={"dir": tmp_path / "x"})})
    again = searched_settings(more.model_dump(mode="json") | {"output": {"dir": "elsewhere"}})
    open_study(recipe.sweep, tmp_path / "s", "swept", "maximize", again)  # folder, output: the same sweep
    changed = recipe.model_dump(mode="json")
    changed["training"]["learning_rate"] = 0.5
    with pytest.raises(UsageError, match=r"other settings \(training.learning_rate differ\)"):
        open_study(recipe.sweep, tmp_path / "s", "swept", "maximize", searched_settings(changed))


def _quick_trials(monkeypatch, stop_after: int) -> list[int]:
    """Trials that score at once (no training); the clock jumps past any deadline after ``stop_after``."""
    from types import SimpleNamespace

    from lora_adapt.sweep.trial import TrialCost

    calls: list[int] = []
    now = [0.0]

    def quick(trial, *args, **kwargs):
        calls.append(trial.number)
        if len(calls) >= stop_after:
            now[0] += 10**6
        return 0.5, {}, TrialCost()

    monkeypatch.setattr(sweep_module, "run_trial", quick)
    monkeypatch.setattr(sweep_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr(sweep_module, "finish", lambda *args, **kwargs: {})
    return calls


def test_a_sweep_with_minutes_alone_runs_until_the_time_is_spent(tmp_path, monkeypatch):
    rate = {"training.learning_rate": {"low": 1e-3, "high": 5e-2, "log": True}}
    sweep = {"method": "random", "space": rate, "budget": {"minutes": 30}, "pruning": {"method": "none"}}
    recipe = load_recipe(sweep_recipe(tmp_path, tmp_path, sweep))
    assert recipe.sweep.budget.trials is None  # no default count of 20 beside the minutes
    calls = _quick_trials(monkeypatch, stop_after=25)
    said: list[str] = []
    run_sweep(recipe, echo=said.append)
    assert len(calls) == 25  # past the default 20: only the time stops it
    assert "0 trials done; trials until 30 minutes are spent" in said[0], said[0]  # not "0 of unlimited"
    assert "sweep: 30 minutes spent" in said  # why it stopped
    counts = load_recipe(sweep_recipe(tmp_path, tmp_path, {"space": rate})).sweep.budget
    assert counts.trials == 20 and counts.minutes is None  # neither given: 20 trials


def test_a_sweep_with_minutes_alone_stops_when_a_finite_space_is_exhausted(tmp_path, monkeypatch):
    space = {"adapter.rank": {"values": [2, 4]}, "training.learning_rate": {"values": [1e-3, 1e-2]}}
    sweep = {"method": "random", "space": space, "budget": {"minutes": 30}, "pruning": {"method": "none"}}
    said: list[str] = []
    calls = _quick_trials(monkeypatch, stop_after=200)
    run_sweep(load_recipe(sweep_recipe(tmp_path, tmp_path, sweep)), echo=said.append)
    tried = {
        (t.params["adapter.rank"], t.params["training.learning_rate"]) for t in trials_of(tmp_path / "sweep")
    }
    assert tried == {(2, 1e-3), (2, 1e-2), (4, 1e-3), (4, 1e-2)} and len(calls) < 200
    assert "sweep: every point of the space has been tried" in said


def test_a_sweep_is_refused_across_several_processes(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from lora_adapt.cli import main

    rate = {"training.learning_rate": {"low": 1e-3, "high": 5e-2, "log": True}}
    recipe = sweep_recipe(tmp_path, tmp_path, {"space": rate})
    refused = CliRunner().invoke(main, ["sweep", str(recipe), "--num-processes", "2"])
    assert refused.exit_code == 2 and "started with --num-processes 2" in refused.output, refused.output
    monkeypatch.setenv("WORLD_SIZE", "2")  # one rank of torchrun / accelerate launch
    launched = CliRunner().invoke(main, ["sweep", str(recipe)])
    assert launched.exit_code == 2 and "WORLD_SIZE=2" in launched.output, launched.output
    for result in (refused, launched):
        assert "a sweep cannot run its trials across several processes" in result.output
        assert "one sweep per GPU" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "sweep").exists()


def test_a_nan_training_loss_stops_the_trial_though_the_divergence_guard_sees_it_first():
    """The reporter's own check is not dead code: the guard, before it in the callback list, only flags
    the loss (training stops after the step, its error comes after training); the reporter raises."""
    from types import SimpleNamespace

    from transformers import TrainerControl

    from lora_adapt.sweep.trial import TrialCost, TrialFailed, TrialReporter
    from lora_adapt.training.divergence import DivergenceGuard

    guard, control = DivergenceGuard(), TrainerControl()
    state, logs = SimpleNamespace(global_step=3), {"loss": float("nan")}
    guard.on_log(None, state, control, logs=logs)  # no exception
    assert guard.tripped is not None and control.should_training_stop
    with pytest.raises(TrialFailed, match="the training loss became nan at step 3"):
        TrialReporter(trial=None, metric="f1_macro", cost=TrialCost()).on_log(None, state, control, logs=logs)


def test_a_second_process_on_the_same_sweep_proposes_other_points(tmp_path, monkeypatch):
    """Two sweeps started together on one folder both find the study empty; each process's sampler seed
    differs by its worker number, and a sweep alone is seeded as before (sweep.seed + trials so far)."""
    from lora_adapt.sweep.study import worker_slot

    rate = {"training.learning_rate": {"low": 1e-4, "high": 1e-1, "log": True}}
    sweep = {"method": "random", "space": rate, "budget": {"trials": 1}, "pruning": {"method": "none"}}
    sweep["include_recipe"] = False  # sampled points only (the recipe's own would come first)
    recipe = load_recipe(sweep_recipe(tmp_path, tmp_path, sweep))
    first = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=recipe.sweep.seed)).ask()
    alone = first.suggest_float("training.learning_rate", 1e-4, 1e-1, log=True)
    _quick_trials(monkeypatch, stop_after=100)
    said: list[str] = []
    with worker_slot(tmp_path / "sweep") as worker:  # the first process, still running
        assert worker == 0
        run_sweep(recipe, echo=said.append)
    (joined,) = trials_of(tmp_path / "sweep")
    assert joined.user_attrs["worker"] == 1 and "as worker 1" in " ".join(said)
    assert joined.params["training.learning_rate"] != pytest.approx(alone)
    run_sweep(recipe.model_copy(update={"sweep": recipe.sweep.model_copy(update={"dir": tmp_path / "b"})}))
    (single,) = trials_of(tmp_path / "b")
    assert single.user_attrs["worker"] == 0
    assert single.params["training.learning_rate"] == pytest.approx(alone, rel=1e-12)
    assert not list((tmp_path / "sweep").glob(".worker-*"))  # released: nothing left in the folder


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_a_repeated_point_is_not_trained_again_and_a_finite_space_still_ends(tmp_path, monkeypatch, method):
    space = {"adapter.rank": {"values": [2, 4]}, "training.learning_rate": {"values": [1e-3, 1e-2]}}
    sweep = {"method": method, "space": space, "budget": {"trials": 10}, "pruning": {"method": "none"}}
    if method == "bayes":
        sweep["startup_trials"] = 2
    said: list[str] = []
    calls = _quick_trials(monkeypatch, stop_after=10**6)
    run_sweep(load_recipe(sweep_recipe(tmp_path, tmp_path, sweep)), echo=said.append)
    trials = trials_of(tmp_path / "sweep")
    point = {t.number: (t.params["adapter.rank"], t.params["training.learning_rate"]) for t in trials}
    trained = [point[n] for n in calls]
    assert sorted(trained) == [(2, 1e-3), (2, 1e-2), (4, 1e-3), (4, 1e-2)]  # each point trained once
    repeats = [t for t in trials if "repeat_of" in t.user_attrs]
    assert repeats, "the sampler proposed no point twice: nothing tested"
    for t in repeats:
        earlier = trials[t.user_attrs["repeat_of"]]
        assert t.number not in calls and point[earlier.number] == point[t.number]
        assert t.state.name == earlier.state.name == "COMPLETE" and t.value == earlier.value
    assert (
        counted(
            optuna.load_study(study_name="swept", storage=f"sqlite:///{tmp_path / 'sweep' / A.SWEEP_STUDY}")
        )
        == 4
    )
    assert "sweep: every point of the space has been tried" in said
    assert any("again: its result (complete) is reused, not trained again" in line for line in said)
    rows = {int(r["trial"]): r for r in csv.DictReader((tmp_path / "sweep" / A.SWEEP_TABLE_CSV).open())}
    for t in repeats:
        row = rows[t.number]
        assert row["state"] == "REPEAT"
        assert (
            row["reason"]
            == f"same values as trial {t.user_attrs['repeat_of']}: its result (complete) reused, not trained"
        )


def test_an_interrupted_sweep_says_how_to_resume_it(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from lora_adapt.cli import main

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_module, "run_trial", interrupt)
    rate = {"training.learning_rate": {"low": 1e-3, "high": 5e-2, "log": True}}
    result = CliRunner().invoke(main, ["sweep", str(sweep_recipe(tmp_path, tmp_path, {"space": rate}))])
    assert result.exit_code == 130
    assert "rerun the same `lora-adapt sweep` to resume" in result.output, result.output
    assert "--resume" not in result.output  # sweep has no such option


def test_a_sweep_without_a_completed_trial_says_so(tmp_path, monkeypatch):
    from lora_adapt.sweep.trial import TrialFailed

    def fail(*args, **kwargs):
        raise TrialFailed("no luck")

    monkeypatch.setattr(sweep_module, "run_trial", fail)
    sweep = {"method": "grid", "space": {"adapter.rank": {"values": [2, 4]}}, "budget": {"trials": 2}}
    said: list[str] = []
    run_sweep(load_recipe(sweep_recipe(tmp_path, tmp_path, sweep)), echo=said.append)
    assert (
        f"sweep: no trial completed yet (2 failed); the reasons are in {tmp_path / 'sweep' / A.SWEEP_TABLE_MD}"
        in said
    )


def test_a_repeat_of_a_pruned_or_failed_trial_keeps_its_state_and_reason_and_is_not_trained(
    tmp_path, monkeypatch
):
    from types import SimpleNamespace

    from lora_adapt.sweep.trial import TrialCost, TrialFailed

    space = {"adapter.rank": {"values": [2, 4]}, "training.learning_rate": {"values": [1e-3, 1e-2]}}
    sweep = {"method": "random", "space": space, "budget": {"trials": 12}, "pruning": {"method": "none"}}
    calls: list[int] = []

    def outcome(trial, *args, **kwargs):  # rank 2 is pruned, rank 4 at 1e-2 fails, rank 4 at 1e-3 scores
        calls.append(trial.number)
        rank, rate = trial.params["adapter.rank"], trial.params["training.learning_rate"]
        if rank == 2:
            trial.report(0.25, 3)
            raise optuna.TrialPruned("pruned at evaluation 1 (step 3): f1_macro 0.2500")
        if rate == 1e-2:
            raise TrialFailed("the training loss became nan at step 2")
        return 0.5, {}, TrialCost()

    monkeypatch.setattr(sweep_module, "run_trial", outcome)
    monkeypatch.setattr(sweep_module, "time", SimpleNamespace(monotonic=lambda: 0.0))
    monkeypatch.setattr(sweep_module, "finish", lambda *args, **kwargs: {})
    run_sweep(load_recipe(sweep_recipe(tmp_path, tmp_path, sweep)), echo=lambda line: None)
    trials = trials_of(tmp_path / "sweep")
    point = {t.number: (t.params["adapter.rank"], t.params["training.learning_rate"]) for t in trials}
    assert sorted(point[n] for n in calls) == [(2, 1e-3), (2, 1e-2), (4, 1e-3), (4, 1e-2)]  # once each
    repeats = [t for t in trials if "repeat_of" in t.user_attrs]
    states = {trials[t.user_attrs["repeat_of"]].state.name for t in repeats}
    assert states & {"PRUNED", "FAIL"}, "no pruned or failed point was proposed again: nothing tested"
    rows = {int(r["trial"]): r for r in csv.DictReader((tmp_path / "sweep" / A.SWEEP_TABLE_CSV).open())}
    for t in repeats:
        earlier = trials[t.user_attrs["repeat_of"]]
        assert t.number not in calls and t.state == earlier.state
        if earlier.state.name == "PRUNED":
            assert t.intermediate_values == earlier.intermediate_values == {3: 0.25}
            assert t.user_attrs["pruned"] == earlier.user_attrs["pruned"]
            expected = f"pruned: {earlier.user_attrs['pruned']}"
        elif earlier.state.name == "FAIL":
            assert t.user_attrs["failure"] == "the training loss became nan at step 2"
            expected = "fail: the training loss became nan at step 2"
        else:
            expected = "complete"
        assert rows[t.number]["state"] == "REPEAT"
        assert rows[t.number]["reason"] == (
            f"same values as trial {earlier.number}: its result ({expected}) reused, not trained"
        )


def test_a_point_another_process_is_training_is_not_trained_twice(tmp_path, monkeypatch):
    """Two processes sharing a study can be handed the same point (a grid hands out running points once
    every point has started; a queued retry). The second process leaves it to the first: the trial is a
    repeat, not trained, not counted, and the sweep goes on to the rest of the space."""
    import os

    from lora_adapt.sweep.space import suggest
    from lora_adapt.sweep.study import mark_process

    space = {"adapter.rank": {"values": [2, 4]}, "training.learning_rate": {"values": [1e-3, 1e-2]}}
    sweep = {"method": "random", "space": space, "budget": {"trials": 10}, "pruning": {"method": "none"}}
    recipe = load_recipe(sweep_recipe(tmp_path, tmp_path, sweep))
    taken = {"adapter.rank": 4, "training.learning_rate": 1e-2}
    real_open = sweep_module.open_study

    def open_with_a_busy_neighbour(*args, **kwargs):
        study = real_open(*args, **kwargs)
        study.enqueue_trial(taken)
        other = study.ask()  # "another process" (a live pid on this machine) trains `taken` meanwhile
        suggest(other, recipe.sweep)
        mark_process(other)
        other.set_user_attr("pid", os.getppid())
        study.enqueue_trial(taken)  # ... and this process is handed the same point next
        return study

    monkeypatch.setattr(sweep_module, "open_study", open_with_a_busy_neighbour)
    said: list[str] = []
    calls = _quick_trials(monkeypatch, stop_after=10**6)
    run_sweep(recipe, echo=said.append)
    trials = trials_of(tmp_path / "sweep")
    point = {t.number: (t.params["adapter.rank"], t.params["training.learning_rate"]) for t in trials}
    assert sorted(point[n] for n in calls) == [(2, 1e-3), (2, 1e-2), (4, 1e-3)]  # never (4, 1e-2)
    (twin,) = [t for t in trials if t.user_attrs.get("running_twin")]
    assert twin.number not in calls and twin.user_attrs["repeat_of"] == 0 and point[twin.number] == (4, 1e-2)
    assert any("which another process is training now: not trained twice" in line for line in said)
    rows = {int(r["trial"]): r for r in csv.DictReader((tmp_path / "sweep" / A.SWEEP_TABLE_CSV).open())}
    assert rows[twin.number]["state"] == "REPEAT"
    assert "which another process was training: not trained twice" in rows[twin.number]["reason"]


def test_the_recipes_own_values_are_the_first_trial_and_the_report_compares_the_best_with_them(
    tmp_path, tiny_bert_dir
):
    """A bayes sweep (from its own file) whose space holds the recipe's values (learning rate 1e-2, alpha 2x
    rank 2) tries them first; the best is never below them on validation, and the summary, report and
    tables say so."""
    space = {
        "training.learning_rate": {"low": 1e-3, "high": 5e-2, "log": True},
        "adapter.alpha": {"values": [1, 2, 4], "relative_to": "adapter.rank"},
    }
    sweep = {"method": "bayes", "space": space, "budget": {"trials": 3}, "pruning": {"method": "none"}}
    recipe = sweep_recipe(tmp_path, tiny_bert_dir, {"space": {"adapter.rank": {"values": [2, 4]}}})
    section = tmp_path / "sweep.yaml"  # --sweep FILE: replaces the recipe's own section
    section.write_text(json.dumps({"sweep": {**sweep, "dir": str(tmp_path / "sweep")}}))
    output = run_cli("sweep", str(recipe), "--sweep", str(section)).output
    folder = tmp_path / "sweep"
    first, *rest = trials_of(folder)
    assert first.params == {"training.learning_rate": 1e-2, "adapter.alpha/adapter.rank": 2}
    assert first.user_attrs["recipe_values"] is True and not any(
        "recipe_values" in t.user_attrs for t in rest
    )
    assert len(rest) == 2 and all(t.state.name == "COMPLETE" for t in rest)
    summary = json.loads((folder / A.SWEEP_SUMMARY).read_text())
    own = summary["recipe_trial"]
    assert own["trial"] == 0 and own["validation"] == first.value
    assert (
        own["best_above_by"] == pytest.approx(summary["best"]["validation"] - first.value)
        and own["best_above_by"] >= 0
    )
    assert (
        "first trial tries the recipe's own values" in output
        and "the recipe's own values (trial 0)" in output
    )
    assert "**The recipe's own values:** trial 0, complete" in (folder / A.SWEEP_REPORT).read_text()
    assert "0 (the recipe's values)" in (folder / A.SWEEP_TABLE_MD).read_text()
    assert [r["recipe_values"] for r in csv.DictReader((folder / A.SWEEP_TABLE_CSV).open())] == [
        "True",
        "False",
        "False",
    ]


@pytest.mark.parametrize(
    ("space", "method", "why"),
    [
        (
            {"training.learning_rate": {"low": 1e-4, "high": 5e-3, "log": True}},
            "random",
            "training.learning_rate 0.01 is not in the space",
        ),
        (
            {"adapter.alpha": {"values": [1, 4], "relative_to": "adapter.rank"}},
            "random",
            "adapter.alpha 2 x adapter.rank is not in the space",
        ),
        (
            {"training.learning_rate": {"values": [1e-3, 5e-2]}},
            "grid",
            "training.learning_rate 0.01 is not in the space",
        ),
        (
            {"training.epochs": {"low": 1, "high": 9, "step": 2}},
            "random",
            "training.epochs 2.0 is not in the space",
        ),
        ({"adapter.dropout": {"low": 0.0, "high": 0.3, "step": 0.1}}, "grid", ""),
        ({"training.learning_rate": {"low": 1e-3, "high": 5e-2}}, "random", ""),
        ({"adapter.rank": {"values": [True, 2]}}, "random", ""),
    ],
)
def test_the_recipes_own_values_are_tried_only_where_the_space_holds_them(tmp_path, space, method, why):
    from lora_adapt.sweep.space import recipe_point

    sweep = {"method": method, "space": space, "budget": {"trials": 4}, "pruning": {"method": "none"}}
    recipe = load_recipe(sweep_recipe(tmp_path, tmp_path, sweep, training={"epochs": 2, "max_steps": None}))
    point, reason = recipe_point(recipe.model_dump(mode="json"), recipe.sweep)
    assert reason == why
    if not why:
        ((name, value),) = point.items()
        assert value == {"adapter.dropout": 0.0, "training.learning_rate": 1e-2, "adapter.rank": 2}[name]
        assert value is not True


def test_a_grid_holding_the_recipes_values_starts_with_them_and_visits_each_point_once(tmp_path, monkeypatch):
    space = {"training.learning_rate": {"values": [1e-3, 1e-2, 5e-2]}, "adapter.rank": {"values": [2, 4]}}
    sweep = {"method": "grid", "space": space, "budget": {"trials": 6}, "pruning": {"method": "none"}}
    recipe = load_recipe(sweep_recipe(tmp_path, tmp_path, sweep))
    calls = _quick_trials(monkeypatch, stop_after=100)
    run_sweep(recipe, echo=lambda line: None)
    trials = trials_of(tmp_path / "sweep")
    assert len(calls) == 6 and [t.state.name for t in trials] == ["COMPLETE"] * 6
    assert trials[0].params == {"training.learning_rate": 1e-2, "adapter.rank": 2}
    assert trials[0].user_attrs["recipe_values"] is True
    visited = sorted((t.params["training.learning_rate"], t.params["adapter.rank"]) for t in trials)
    assert visited == sorted((lr, r) for lr in (1e-3, 1e-2, 5e-2) for r in (2, 4))
