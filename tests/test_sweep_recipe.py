"""What `lora-adapt validate` checks without torch: the `sweep` section (keys, ranges, grids against the
budget, the objective), the early-stopping metric, `data.sources`, and trial recipes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import cli

from lora_adapt.errors import RecipeError
from lora_adapt.recipe import load_recipe
from lora_adapt.recipe.derived import TASK_METRICS, validation_metrics
from lora_adapt.recipe.trials import resolve_params, trial_recipe

BASE = {
    "name": "demo",
    "task": {"type": "classification"},
    "model": {"name_or_path": "org/model"},
    "data": {"path": "data.jsonl"},
}


def write(tmp_path: Path, **sections) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**BASE, **sections}, sort_keys=False))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    return info.value.problems


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_a_valid_sweep_passes_validate_without_torch(tmp_path):
    sweep = {
        "method": "bayes",
        "space": {
            "training.learning_rate": {"low": 1.0e-4, "high": 3.0e-3, "log": True},
            "adapter.rank": {"values": [4, 8, 16]},
            "adapter.alpha": {"values": [1, 2], "relative_to": "adapter.rank"},
            "training.epochs": {"low": 2, "high": 6},
            "adapter.target_modules": {"values": ["all-linear", ["query", "value"]]},
        },
        "objective": {"metric": "eval_f1_macro"},
        "budget": {"trials": 12, "minutes": 30},
    }
    path = write(tmp_path, sweep=sweep)
    code = (
        "import sys; from lora_adapt.cli import main; sys.argv = ['lora-adapt', 'validate', sys.argv[1]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "assert 'torch' not in sys.modules, 'validate imported torch'"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "ok:" in out.stdout
    space = load_recipe(path).sweep.space
    assert space["training.epochs"].kind == "int" and space["training.learning_rate"].kind == "float"


def test_unknown_paths_get_a_did_you_mean_on_their_line(tmp_path):
    sweep = {
        "space": {
            "adapter.rnak": {"values": [4, 8]},
            "training.lr": {"low": 1.0e-4, "high": 1.0e-3},
            "output.dir": {"values": ["a"]},
            "adapter": {"values": [1]},
            "adapter.alpha": {"values": [1, 2], "relative_to": "adapter.rnk"},
        }
    }
    path = write(tmp_path, sweep=sweep)
    found = "\n".join(problems(path))
    assert (
        f"recipe.yaml:{line_of(path, 'adapter.rnak')}: sweep.space.adapter.rnak: unknown key 'rnak' in adapter — did you mean 'rank'?"
        in found
    )
    assert "unknown key 'lr' in training" in found
    assert "'output' cannot be searched" in found
    assert "'adapter' is a section; name a key inside it" in found
    assert "sweep.space.adapter.alpha.relative_to: unknown key 'rnk'" in found


def test_impossible_ranges_and_values_are_reported_in_one_pass(tmp_path):
    sweep = {
        "space": {
            "training.learning_rate": {"low": 1.0e-2, "high": 1.0e-4},
            "training.weight_decay": {"low": 0.0, "high": 0.1, "log": True},
            "adapter.rank": {"low": 2.5, "high": 8.0},
            "adapter.dropout": {"values": [0.1, 1.5]},
            "training.warmup_ratio": {"values": [0.1, 0.1]},
        }
    }
    found = "\n".join(problems(write(tmp_path, sweep=sweep)))
    assert "`low` (0.01) must be below `high` (0.0001)" in found
    assert "a log range needs `low` > 0" in found
    assert "`values` lists the same value twice" in found
    # value checks run once the keys are sound
    sweep["space"] = {"adapter.rank": {"low": 2.5, "high": 8.0}, "adapter.dropout": {"values": [0.1, 1.5]}}
    found = "\n".join(problems(write(tmp_path, sweep=sweep)))
    assert "adapter.rank takes whole numbers" in found
    assert (
        "sweep.space.adapter.dropout: 1.5 gives an invalid recipe: adapter.dropout: Input should be less than 1"
        in found
    )


def test_a_grid_larger_than_the_budget_or_continuous_is_refused(tmp_path):
    space = {"adapter.rank": {"values": [4, 8, 16]}, "training.learning_rate": {"values": [1e-4, 1e-3]}}
    path = write(tmp_path, sweep={"method": "grid", "space": space, "budget": {"trials": 4}})
    found = "\n".join(problems(path))
    assert (
        f"recipe.yaml:{line_of(path, 'trials:')}: the grid has 6 points but sweep.budget.trials is 4" in found
    )
    space["training.learning_rate"] = {"low": 1e-4, "high": 1e-3}
    found = "\n".join(problems(write(tmp_path, sweep={"method": "grid", "space": space})))
    assert "give training.learning_rate `values` or a `step`" in found
    space["training.learning_rate"] = {"low": 1e-4, "high": 5e-4, "step": 1e-4}
    recipe = load_recipe(write(tmp_path, sweep={"method": "grid", "space": space, "budget": {"trials": 15}}))
    assert recipe.sweep.grid_size() == 15


def test_the_objective_and_early_stopping_metric_must_be_validation_metrics(tmp_path):
    path = write(
        tmp_path,
        training={"early_stopping": {"metric": "f1_macr"}},
        sweep={"space": {"adapter.rank": {"values": [4, 8]}}, "objective": {"metric": "acuracy"}},
    )
    found = problems(path)
    assert any(
        f"recipe.yaml:{line_of(path, 'f1_macr')}" in p and "did you mean 'f1_macro'?" in p for p in found
    )
    assert any("'sweep.objective.metric' = 'acuracy'" in p and "did you mean 'accuracy'?" in p for p in found)
    relations = {"type": "relation_classification", "negative_label": "Other"}
    ok = write(tmp_path, task=relations, training={"early_stopping": {"metric": "eval_f1_macro_official"}})
    assert load_recipe(ok).training.early_stopping.metric == "eval_f1_macro_official"
    sft = write(tmp_path, task={"type": "sft"}, training={"early_stopping": {"metric": "f1_macro"}})
    assert any("known: loss" in p for p in problems(sft))


def test_validate_exits_2_on_a_metric_typo(tmp_path):
    path = write(tmp_path, training={"early_stopping": {"metric": "f1"}})
    result = cli("validate", str(path))
    assert result.exit_code == 2 and "is not a validation metric of this task" in result.output


def test_pruning_needs_evaluations_and_the_sweep_needs_validation(tmp_path):
    space = {"adapter.rank": {"values": [4, 8]}}
    found = "\n".join(problems(write(tmp_path, training={"epochs": 1}, sweep={"space": space})))
    assert "pruning compares trials mid-way and needs at least 2 evaluations" in found
    data = {"path": "data.jsonl", "split": {"validation": 0.0}}
    found = "\n".join(
        problems(write(tmp_path, data=data, sweep={"space": space, "pruning": {"method": "none"}}))
    )
    assert "a sweep chooses on the validation split" in found


def test_task_metrics_match_what_evaluation_reports():
    from lora_adapt.evaluation.scoring import score
    from lora_adapt.recipe.schema import TaskSpec

    cases = {
        "single": (TaskSpec(type="classification"), ["a", "b"], ["a", "a"], ["a", "b"]),
        "multi": (
            TaskSpec(type="classification", multi_label=True),
            [["a"], ["b"]],
            [["a"], None],
            ["a", "b"],
        ),
        "relation": (
            TaskSpec(type="relation_classification", negative_label="Other"),
            ["X(e1,e2)", "Other"],
            ["X(e1,e2)", "Other"],
            ["X(e1,e2)", "X(e2,e1)", "Other"],
        ),
        "tagging": (
            TaskSpec(type="token_classification"),
            [["B-PER", "O"]],
            [["B-PER", "O"]],
            ["O", "B-PER"],
        ),
        "entities": (
            TaskSpec(type="token_classification"),
            [[("PER", "x")]],
            [[("PER", "x")]],
            ["O", "B-PER"],
        ),
        "extraction": (TaskSpec(type="extraction"), [{"a": 1}], [{"a": 1}], None),
    }
    counts = {"n", "invalid", "entities_gold", "entities_predicted"}
    for kind, (task, gold, pred, labels) in cases.items():
        out = score(kind, gold, pred, labels, task)
        scalars = {k for k, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        binary_only = set() if "positive_label" in out else {"f1_positive"}
        assert scalars - counts == set(TASK_METRICS[kind]) - binary_only, kind
    assert "positive_label" in score(
        "single", ["a", "b"], ["a", "a"], ["a", "b"], TaskSpec(type="classification")
    )
    assert validation_metrics(TaskSpec(type="sft")) == ("loss",)


def test_trial_recipes_resolve_multiples_and_keep_what_the_user_set(tmp_path):
    sweep = {"space": {"adapter.alpha": {"values": [1, 4], "relative_to": "adapter.rank"}}}
    recipe = load_recipe(write(tmp_path, adapter={"rank": 8}, sweep=sweep))
    values = resolve_params(recipe, recipe.sweep.space, {"adapter.alpha": 4, "adapter.rank": 16})
    assert values == {"adapter.alpha": 64, "adapter.rank": 16}
    trial = trial_recipe(recipe, {"adapter.alpha": 32.0}, name="t-1")
    assert trial.adapter.alpha == 32.0 and trial.adapter.rank == 8 and trial.name == "t-1"
    assert trial.sweep is None and trial.data.path == recipe.data.path


def test_data_sources_are_validated(tmp_path):
    sources = [{"path": "a.jsonl", "weight": 2}, {"path": "b.jsonl"}]
    found = "\n".join(problems(write(tmp_path, data={"sources": sources})))
    assert "give every source a `weight`" in found
    found = "\n".join(
        problems(write(tmp_path, data={"sources": [{"path": "a.jsonl", "weight": 1, "ratio": 0.5}]}))
    )
    assert "either `weight`" in found
    found = "\n".join(problems(write(tmp_path, data={"path": "x.jsonl", "sources": [{"path": "a.jsonl"}]})))
    assert "are exclusive" in found
    found = "\n".join(problems(write(tmp_path, data={"path": "x.jsonl", "mixing": {"rows": 10}})))
    assert "data.mixing applies to data.sources" in found
    ok = load_recipe(
        write(tmp_path, data={"sources": [{"path": "a.jsonl", "ratio": 0.5}, {"path": "sub/b.csv"}]})
    )
    assert ok.data.sources[1].path == (tmp_path / "sub" / "b.csv").resolve()  # resolved like data.path
    assert [s.label for s in ok.data.sources] == ["a", "b"]


def test_a_searched_value_the_trial_recipe_cannot_use_is_refused_at_its_sweep_key(tmp_path):
    space = {"training.early_stopping.metric": {"values": ["f1_macro", "f1_macr"]}}
    path = write(tmp_path, training={"epochs": 3}, sweep={"space": space})
    found = problems(path)
    line = line_of(path, "training.early_stopping.metric")
    assert any(
        f"recipe.yaml:{line}" in p
        and "sweep.space.training.early_stopping.metric: 'f1_macr' gives an invalid recipe" in p
        and "did you mean 'f1_macro'?" in p
        for p in found
    ), found
    result = cli("validate", str(path))
    assert result.exit_code == 2 and "sweep.space.training.early_stopping.metric" in result.output
    assert "Traceback" not in result.output and "KeyError" not in result.output
    # A grid checks every combination: a binary-only metric with three labels, each fine on its own.
    grid = {
        "method": "grid",
        "space": {
            "task.labels": {"values": [["a", "b"], ["a", "b", "c"]]},
            "training.early_stopping.metric": {"values": ["f1_macro", "f1_positive"]},
        },
        "budget": {"trials": 4},
    }
    task = {"type": "classification", "labels": ["a", "b"]}
    found = "\n".join(problems(write(tmp_path, task=task, training={"epochs": 3}, sweep=grid)))
    assert "the grid point" in found and "exists for two labels only" in found, found
    # The recipe's own mistake is said once, at its key, not again for every searched value.
    own = write(
        tmp_path,
        training={"epochs": 3, "early_stopping": {"metric": "bogus"}},
        sweep={"space": {"adapter.rank": {"values": [4, 8]}}},
    )
    assert len(problems(own)) == 1


def test_a_trial_whose_combination_of_values_is_invalid_fails_with_the_reason(tmp_path):
    from types import SimpleNamespace

    from lora_adapt.sweep.trial import TrialFailed, run_trial

    space = {
        "task.labels": {"values": [["a", "b"], ["a", "b", "c"]]},
        "training.early_stopping.metric": {"values": ["f1_macro", "f1_positive"]},
    }
    task = {"type": "classification", "labels": ["a", "b"]}
    recipe = load_recipe(write(tmp_path, task=task, training={"epochs": 3}, sweep={"space": space}))
    params = {"task.labels": ["a", "b", "c"], "training.early_stopping.metric": "f1_positive"}
    with pytest.raises(TrialFailed, match="f1_positive.*exists for two labels only"):
        run_trial(SimpleNamespace(number=0), recipe, recipe.sweep, params, tmp_path, None, print)
