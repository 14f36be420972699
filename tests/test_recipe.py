"""Recipes: strict validation, one-pass error reports, overrides, path resolution, JSON schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lora_adapt.cli import main
from lora_adapt.errors import RecipeError
from lora_adapt.recipe import dump_recipe, load_recipe, recipe_from_dict, recipe_json_schema

REPO = Path(__file__).resolve().parents[1]
MINIMAL = "name: demo\nmodel:\n  name_or_path: org/model\ndata:\n  path: data.jsonl\n"


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path: Path, overrides=()) -> list[str]:
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides)
    return info.value.problems


def test_minimal_recipe_gets_schema_defaults_and_resolves_paths(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL))
    assert recipe.adapter.rank == 16 and recipe.adapter.target_modules == "all-linear"
    assert recipe.quantization.method == "none"
    assert recipe.data.path == (tmp_path / "data.jsonl").resolve()
    assert recipe.output.dir == Path("runs")  # the default stays relative: runs/ under the working directory
    written = load_recipe(write(tmp_path, MINIMAL + "output:\n  dir: out\n", "r2.yaml"))
    assert written.output.dir == (tmp_path / "out").resolve()  # a written path resolves against the recipe
    assert recipe.model.name_or_path == "org/model"  # a hub id is not turned into a path


def test_all_problems_reported_in_one_pass_with_line_and_fix(tmp_path):
    text = MINIMAL + "adapter:\n  lora_alpah: 16\n  rank: 0\n  scaling: rslor\ntraining:\n  optimizer: adam\n"
    found = problems(write(tmp_path, text))
    assert len(found) == 4
    joined = "\n".join(found)
    assert "recipe.yaml:7: unknown key 'adapter.lora_alpah' — did you mean 'alpha'?" in joined
    assert "recipe.yaml:8: 'adapter.rank' = 0" in joined
    assert "did you mean 'rslora'" in joined
    assert "recipe.yaml:11: 'training.optimizer' = 'adam'" in joined


def test_problems_across_sections_each_name_the_line_of_the_key_they_are_about(tmp_path):
    text = (
        MINIMAL
        + "task:\n  type: classification\ntraining:\n  packing: true\n  loss_path: chunked\n"
        + "evaluation:\n  baselines: [full_finetune]\nquantization:\n  method: nf4\n"
    )
    found = problems(write(tmp_path, text), ["training.label_smoothing=0.1", "task.multi_label=true"])
    assert len(found) == 4  # one problem each, though their messages hold '; ' themselves
    assert f"{tmp_path / 'recipe.yaml'}:9: training.packing only applies to task.type 'sft'" in found
    assert any("recipe.yaml:10: training.loss_path applies" in p for p in found)
    assert any("recipe.yaml:12: evaluation.baselines 'full_finetune' cannot" in p for p in found)
    assert any(
        p.startswith("--set training.label_smoothing: training.label_smoothing does not") for p in found
    )


def test_problems_are_listed_in_file_order(tmp_path):
    text = MINIMAL + "training:\n  optimizr: x\nadapter:\n  rnk: 2\n"
    found = problems(write(tmp_path, text))
    lines = [int(p.split(":")[1]) for p in found]
    assert lines == sorted(lines)


def test_missing_required_keys(tmp_path):
    found = problems(write(tmp_path, "name: x\n"))
    assert any("missing required key 'model'" in p for p in found)
    assert any("missing required key 'data'" in p for p in found)


def test_overrides_are_applied_and_validated(tmp_path):
    path = write(tmp_path, MINIMAL)
    recipe = load_recipe(path, ["training.learning_rate=1e-4", "adapter.target_modules=[q_proj, v_proj]"])
    assert recipe.training.learning_rate == 1e-4
    assert recipe.adapter.target_modules == ("q_proj", "v_proj")
    found = problems(path, ["training.lr=3", "quantization.method=nf5"])
    assert any(p.startswith("--set training.lr: unknown key") and "learning_rate" in p for p in found)
    assert any(p.startswith("--set quantization.method") and "'nf4'" in p for p in found)
    assert problems(path, ["no-equals-sign"])[0].startswith("--set 'no-equals-sign'")


def test_cross_field_rules(tmp_path):
    text = MINIMAL + "task:\n  type: sft\n  mode: head\n"
    assert any("does not apply" in p for p in problems(write(tmp_path, text)))
    both = MINIMAL + "  train: t.jsonl\n"
    assert any("exclusive" in p for p in problems(write(tmp_path, both)))
    split = MINIMAL + "  split:\n    validation: 0.6\n    test: 0.5\n"
    assert any("must be < 1" in p for p in problems(write(tmp_path, split)))


def test_yaml_syntax_error_names_the_line(tmp_path):
    found = problems(write(tmp_path, "name: x\nmodel: [unclosed\n"))
    assert "recipe.yaml:" in found[0] and "not valid YAML" in found[0]


def test_resolved_recipe_round_trips(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL + "output:\n  dir: out\n"))
    again = load_recipe(write(tmp_path, dump_recipe(recipe), "resolved.yaml"))
    assert again == recipe


def test_json_schema_is_strict_and_documented():
    schema = recipe_json_schema()
    assert schema["additionalProperties"] is False
    adapter = schema["$defs"]["AdapterSpec"]
    assert adapter["additionalProperties"] is False
    assert adapter["properties"]["scaling"]["enum"] == ["standard", "rslora"]
    assert "description" in adapter["properties"]["target_modules"]
    json.dumps(schema)


SWEEPS = REPO / "recipes" / "sweeps"  # sweep sections for `--sweep FILE`, not recipes


@pytest.mark.parametrize(
    "path",
    sorted(p for p in (REPO / "recipes").rglob("*.yaml") if SWEEPS not in p.parents),
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_every_shipped_recipe_validates_and_has_a_header(path):
    load_recipe(path)
    head = path.read_text().splitlines()[:6]
    assert head and all(line.startswith("#") for line in head[:3]), "recipes start with a header comment"
    text = path.read_text().lower()
    assert "lora-adapt run" in text and "hardware" in text and "time" in text


@pytest.mark.parametrize("sweep", sorted(SWEEPS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_file_validates_with_every_task_recipe(sweep):
    for task in sorted((REPO / "recipes" / "tasks").glob("*.yaml")):
        recipe = load_recipe(task, sweep_file=sweep)
        assert recipe.sweep is not None and recipe.sweep.space, task
    assert "lora-adapt sweep" in sweep.read_text()


def test_a_sweep_file_replaces_the_recipes_section_and_its_problems_name_its_lines(tmp_path):
    recipe = write(tmp_path, MINIMAL + "sweep:\n  space:\n    adapter.rank: {values: [2, 4]}\n")
    (tmp_path / "s").mkdir()
    bare = write(
        tmp_path / "s", "method: random\ndir: out\nspace:\n  adapter.dropout: {values: [0.0, 0.1]}\n"
    )
    loaded = load_recipe(recipe, ["sweep.budget.trials=3"], sweep_file=bare)
    assert loaded.sweep.method == "random" and list(loaded.sweep.space) == ["adapter.dropout"]
    assert loaded.sweep.budget.trials == 3 and loaded.sweep.dir == tmp_path / "s" / "out"  # its own folder
    wrapped = write(tmp_path, "sweep:\n  space:\n    training.epochs: {values: [1, 2]}\n", "wrapped.yaml")
    assert list(load_recipe(recipe, sweep_file=wrapped).sweep.space) == ["training.epochs"]
    bad = write(
        tmp_path,
        "method: bayes\nspace:\n  adapter.rnak: {values: [2]}\n  adapter.rank: {low: 8, high: 4}\n",
        "bad.yaml",
    )
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe, sweep_file=bad)
    assert [p.split(": ")[0] for p in info.value.problems] == [f"{bad}:3", f"{bad}:4"]
    assert "did you mean 'rank'" in info.value.problems[0]
    runner = CliRunner()
    for args in (
        ["validate", str(recipe), "--sweep", str(tmp_path / "nope.yaml")],
        ["validate", str(recipe), "--sweep", str(bad)],
    ):
        res = runner.invoke(main, args)
        assert res.exit_code == 2 and "Traceback" not in res.output
    ok = runner.invoke(main, ["validate", str(recipe), "--sweep", str(bare)])
    assert ok.exit_code == 0 and f"--sweep {bare}" in ok.output


def test_validate_command_exit_codes(tmp_path):
    runner = CliRunner()
    good = write(tmp_path, MINIMAL)
    ok = runner.invoke(main, ["validate", str(good)])
    assert ok.exit_code == 0 and "ok:" in ok.output
    bad = write(tmp_path, MINIMAL + "adapter:\n  rnk: 3\n", "bad.yaml")
    res = runner.invoke(main, ["validate", str(bad)])
    assert res.exit_code == 2
    assert "did you mean 'rank'" in res.output and "Traceback" not in res.output
    missing = runner.invoke(main, ["validate", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "not found" in missing.output


def test_validate_does_not_import_torch(tmp_path):
    good = write(tmp_path, MINIMAL)
    code = (
        "import sys; from lora_adapt.cli import main\n"
        f"try: main(['validate', {str(good)!r}])\nexcept SystemExit: pass\n"
        "assert 'torch' not in sys.modules, 'validate imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_planner_run_dirs_and_derived_decisions_import_no_torch():
    code = (
        "import sys, lora_adapt.planner, lora_adapt.recipe.derived, lora_adapt.rundir, lora_adapt.modeling.source\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:3]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_schema_command_prints_json():
    res = CliRunner().invoke(main, ["schema"])
    assert res.exit_code == 0
    assert json.loads(res.output)["title"] == "lora-adapt recipe"


def test_recipe_keys_documented_in_schema_defaults_only():
    # defaults live in the schema: a minimal recipe dumped back has every section
    data = yaml.safe_load(dump_recipe(load_recipe_from_text(MINIMAL)))
    assert set(data) >= {
        "task",
        "model",
        "quantization",
        "adapter",
        "data",
        "training",
        "evaluation",
        "output",
    }


def load_recipe_from_text(text: str):
    from lora_adapt.recipe import recipe_from_dict

    return recipe_from_dict(yaml.safe_load(text), base_dir=Path("."))


def test_full_finetune_baseline_learning_rate():
    from lora_adapt.recipe.derived import full_finetune_training as derived_training

    base = {
        "name": "x",
        "model": {"name_or_path": "m"},
        "data": {"train": "t.jsonl"},
        "task": {"type": "classification"},
        "training": {"learning_rate": 2e-3},
    }
    default = recipe_from_dict({**base, "evaluation": {"baselines": ["full_finetune"]}})
    assert derived_training(default).learning_rate == pytest.approx(2e-4)  # 0.1 x the adapter's
    chosen = recipe_from_dict(
        {**base, "evaluation": {"baselines": ["full_finetune"], "full_finetune_learning_rate": 5e-5}}
    )
    assert derived_training(chosen).learning_rate == 5e-5 and chosen.training.learning_rate == 2e-3
    with pytest.raises(RecipeError, match="'full_finetune' is not in evaluation.baselines"):
        recipe_from_dict({**base, "evaluation": {"full_finetune_learning_rate": 5e-5}})


def test_the_readme_quickstart_command_finds_its_recipe_and_data():
    """The README's first command runs `lora-adapt run recipes/quickstart.yaml` from the checkout: that file
    is the built-in recipe (a link to it), so its relative data paths resolve to the shipped tickets."""
    first_screen = (REPO / "README.md").read_text().split("```")[1]
    commands = [c.strip() for line in first_screen.splitlines() for c in line.split("&&")]
    (target,) = [c.split()[2] for c in commands if c.startswith("lora-adapt run ")]
    assert (REPO / target).resolve() == (REPO / "lora_adapt" / "examples" / "quickstart.yaml").resolve()
    for name in (target, "quickstart"):
        data = load_recipe(REPO / name if name.endswith(".yaml") else name).data
        for path in (data.train, data.test):
            assert path is not None and Path(path).is_file(), (name, path)


def test_a_value_no_branch_of_a_union_accepts_is_one_problem_at_its_own_key(tmp_path):
    """`head_lr_ratio: fast` fails both "a number" and "'auto'": one problem at the real key, both reasons,
    no made-up `...constrained-float` key and no did-you-mean 'auto'."""
    from lora_adapt.errors import RecipeError
    from lora_adapt.recipe import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(
        "name: x\ntask: {type: classification, mode: head}\nmodel: {name_or_path: m}\n"
        "data: {path: a.jsonl}\ntraining: {head_lr_ratio: fast, min_steps: many}\n"
    )
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    text = str(caught.value) + "\n" + "\n".join(getattr(caught.value, "problems", []) or [])
    assert "constrained" not in text and "did you mean" not in text
    assert (
        "'training.head_lr_ratio' = 'fast': Input should be a valid number" in text
        and "one of 'auto'" in text
    )
    assert "'training.min_steps' = 'many': Input should be a valid integer" in text
