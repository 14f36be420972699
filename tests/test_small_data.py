"""Small training sets: the training-split cap, labels a sample never saw, the step budget, learning
rates per parameter role, class weights, and the health verdict that never reports a collapse as success."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from helpers import read_metrics, run_cli, save_recipe, task_recipe, ticket_rows, write_jsonl

from lora_adapt import artifacts as A
from lora_adapt.data import load_split_rows
from lora_adapt.data.splits import sample_rows
from lora_adapt.errors import DataError, RecipeError
from lora_adapt.evaluation.health import assess, verdict_suffix
from lora_adapt.recipe import recipe_from_dict
from lora_adapt.recipe.schema import DataSpec, SplitSpec, TaskSpec, TrainingSpec
from lora_adapt.training import plan_budget
from lora_adapt.training.optimization import class_weights, majority_share, param_groups, role_learning_rates

CLS = TaskSpec(type="classification")
NO_SPLIT = SplitSpec(validation=0, test=0)


def labelled(n: int, rare_every: int = 10) -> list[dict]:
    return [
        {"text": f"example number {i}", "label": "rare" if i % rare_every == 0 else "common"}
        for i in range(n)
    ]


# --- data.max_train_samples ------------------------------------------------------------------


def test_max_train_samples_caps_only_the_training_split_seeded_and_stratified(tmp_path):
    path = write_jsonl(tmp_path / "all.jsonl", labelled(200))
    split = SplitSpec(validation=0.1, test=0.2, seed=7)
    whole, _ = load_split_rows(DataSpec(path=path, split=split), CLS)
    capped, stats = load_split_rows(DataSpec(path=path, split=split, max_train_samples=30), CLS)
    again, _ = load_split_rows(DataSpec(path=path, split=split, max_train_samples=30), CLS)
    other, _ = load_split_rows(DataSpec(path=path, split=split, max_train_samples=30, sample_seed=8), CLS)
    assert len(whole["train"]) == 140 and len(capped["train"]) == 30
    assert capped["validation"] == whole["validation"] and capped["test"] == whole["test"]
    assert other["validation"] == whole["validation"] and other["test"] == whole["test"]
    assert capped == again and capped["train"] != other["train"]
    assert all(row in whole["train"] for row in capped["train"])
    assert Counter(r["label"] for r in capped["train"]) == {"common": 27, "rare": 3}  # 10% rare, as in train
    assert stats["dropped"]["max_train_samples"] == {"train": 110}
    assert stats["train_sample"] == {"limit": 30, "available": 140, "kept": 30, "seed": 7, "stratified": True}


def test_stratified_sample_keeps_every_label_while_the_cap_allows():
    labels = ["a"] * 900 + ["b"] * 90 + ["c"] * 9 + ["d"]
    rows = [{"i": i, "label": label} for i, label in enumerate(labels)]
    kept = sample_rows(rows, 20, seed=1, labels=labels)
    counts = Counter(r["label"] for r in kept)
    assert len(kept) == 20 and set(counts) == {"a", "b", "c", "d"} and counts["a"] >= 15
    assert [r["i"] for r in kept] == sorted(r["i"] for r in kept)  # source order
    assert len(sample_rows(rows, 3, seed=1, labels=labels)) == 3  # fewer rows than labels: proportional
    assert sample_rows(rows, 5000, seed=1, labels=labels) == rows


def test_max_train_samples_without_labels_is_a_plain_seeded_sample(tmp_path):
    rows = [{"tokens": ["w", str(i)], "tags": ["O", "O"]} for i in range(50)]
    path = write_jsonl(tmp_path / "ner.jsonl", rows)
    spec = DataSpec(train=path, split=NO_SPLIT, max_train_samples=12)
    raw, stats = load_split_rows(spec, TaskSpec(type="token_classification"))
    assert len(raw["train"]) == 12 and stats["train_sample"]["stratified"] is False


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"max_samples": 10, "max_train_samples": 10}, "data.max_samples (10) already caps every split"),
        ({"sample_seed": 3}, "set one of them, or remove data.sample_seed"),
        ({"max_train_samples": 0}, "greater than or equal to 1"),
    ],
)
def test_sample_keys_are_validated(tmp_path, data, message):
    recipe = {"name": "x", "model": {"name_or_path": "m"}, "data": {"path": "a.jsonl", **data}}
    with pytest.raises(RecipeError, match=re.escape(message)):
        recipe_from_dict(recipe, base_dir=tmp_path)


# --- labels a small sample never saw ---------------------------------------------------------


def test_labels_only_in_test_join_the_set_with_a_warning(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", labelled(10))
    test = write_jsonl(
        tmp_path / "test.jsonl", [{"text": "a", "label": "common"}, {"text": "b", "label": "new"}]
    )
    raw, stats = load_split_rows(DataSpec(train=train, test=test, split=NO_SPLIT), CLS)
    assert stats["labels"] == ["common", "new", "rare"] and len(raw["test"]) == 2  # nothing dropped
    assert any("['new'] without a training example: 1 test row(s)" in w for w in stats["warnings"])


def test_a_declared_label_set_stays_strict(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", labelled(10))
    test = write_jsonl(tmp_path / "test.jsonl", [{"text": "b", "label": "new"}])
    declared = TaskSpec(type="classification", labels=("common", "rare"))
    with pytest.raises(
        DataError, match=r"test\.jsonl:1: unknown label 'new' in the test split \(not in task.labels\)"
    ):
        load_split_rows(DataSpec(train=train, test=test, split=NO_SPLIT), declared)
    listed = TaskSpec(type="classification", labels=("common", "rare", "never"))
    _, stats = load_split_rows(DataSpec(train=train, split=NO_SPLIT), listed)
    assert stats["labels"] == ["common", "rare", "never"]
    assert any("task.labels lists ['never'] without a training example" in w for w in stats["warnings"])


# --- the step budget, learning rates per role, class weights ----------------------------------


def test_min_steps_adds_whole_epochs_and_spreads_the_evaluations():
    spec = TrainingSpec(epochs=3, batch_size=16)
    small = plan_budget(spec, train_rows=250, head=True)  # 16 steps an epoch, 48 in 3 epochs
    assert (small.epochs, small.planned_steps, small.raised_from) == (19.0, 304, 3)
    assert small.eval_steps == 102  # three evaluations, as the recipe's epochs asked
    large = plan_budget(spec, train_rows=4000, head=True)
    assert (large.epochs, large.planned_steps, large.raised_from, large.eval_steps) == (3, 750, None, None)
    assert plan_budget(spec, train_rows=250, head=False).planned_steps == 48  # generative: auto = 0
    assert (
        plan_budget(TrainingSpec(epochs=3, batch_size=16, min_steps=0), train_rows=250, head=True).epochs == 3
    )
    assert plan_budget(TrainingSpec(max_steps=7), train_rows=250, head=True).planned_steps == 7
    # as transformers counts: 16 batches with accumulation 3 are 6 optimizer steps (the last one partial)
    accumulated = TrainingSpec(epochs=3, batch_size=16, gradient_accumulation_steps=3, min_steps=0)
    assert plan_budget(accumulated, train_rows=250, head=True).planned_steps == 18


def test_head_and_lora_b_get_their_own_learning_rates():
    import torch

    named = [
        ("base_model.model.bert.layer.0.query.lora_A.default.weight", torch.nn.Parameter(torch.zeros(2))),
        ("base_model.model.bert.layer.0.query.lora_B.default.weight", torch.nn.Parameter(torch.zeros(2))),
        ("base_model.model.classifier.modules_to_save.default.weight", torch.nn.Parameter(torch.zeros(2))),
        ("base_model.model.classifier.modules_to_save.default.bias", torch.nn.Parameter(torch.zeros(2))),
        ("base_model.model.bert.layer.0.query.base_layer.weight", torch.nn.Parameter(torch.zeros(2))),
    ]
    named[-1][1].requires_grad_(False)
    spec = TrainingSpec(head_lr_ratio=10, lora_plus_ratio=4, weight_decay=0.01)
    decay = {named[0][0], named[1][0], named[2][0]}
    rates = role_learning_rates(spec, 1e-3, "classification")
    groups = param_groups(named, decay, rates, 0.01, ("classifier", "score"))
    summary = {(g["role"], g["weight_decay"]): (round(g["lr"], 6), len(g["params"])) for g in groups}
    assert summary == {
        ("head", 0.01): (0.01, 1),
        ("head", 0.0): (0.01, 1),
        ("lora_B", 0.01): (0.004, 1),
        ("base", 0.01): (0.001, 1),
    }  # the frozen base weight is in no group
    assert groups[0]["role"] == "base"  # the rate the Trainer logs is training.learning_rate


def test_the_head_rate_ratio_resolves_per_task():
    """`auto`: 10x for heads over sentence features, 1x for tagging and relation heads (they read per-token
    and entity-marker states the adapter must first learn to form; measured on CoNLL-2003 at 250-1,000
    sentences and SemEval at 500 rows). An explicit value is kept."""
    auto = TrainingSpec()
    assert auto.head_lr_ratio == "auto"
    assert auto.resolved_head_lr_ratio("classification") == 10.0
    assert auto.resolved_head_lr_ratio("token_classification") == 1.0
    assert auto.resolved_head_lr_ratio("regression") == 10.0
    assert auto.resolved_head_lr_ratio("relation_classification") == 1.0
    assert role_learning_rates(auto, 1e-3, "relation_classification")["head"] == pytest.approx(1e-3)
    assert role_learning_rates(auto, 1e-3, "classification")["head"] == pytest.approx(1e-2)
    assert TrainingSpec(head_lr_ratio=4).resolved_head_lr_ratio("relation_classification") == 4


def test_a_recorded_default_head_ratio_still_loads_for_a_generative_run(tmp_path):
    """Runs recorded before `auto` dumped head_lr_ratio 10.0 into every resolved recipe, sft ones too:
    reading them back (--resume, eval) must not call that an ignored head setting."""
    from lora_adapt.recipe import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(
        "name: x\nmodel: {name_or_path: m}\ndata: {path: a.jsonl}\ntraining: {head_lr_ratio: 10.0}\n"
    )
    assert load_recipe(path).training.head_lr_ratio == 10.0


def test_class_weights_follow_inverse_frequency():
    ids = [0] * 90 + [1] * 10 + [-100] * 5
    assert class_weights(ids, 3, "none") is None
    with pytest.raises(ValueError, match="not resolved"):  # `auto` never reaches the loss unresolved
        class_weights(ids, 3, "auto")
    balanced = class_weights(ids, 3, "balanced")
    assert balanced == pytest.approx([100 / (2 * 90), 100 / (2 * 10), 1.0])
    assert class_weights(ids, 3, "sqrt_balanced") == pytest.approx([w**0.5 for w in balanced[:2]] + [1.0])
    spec = TrainingSpec()
    assert (
        spec.resolved_class_weights(tagging=True, multi_label=False, majority_share=0.975) == "sqrt_balanced"
    )
    assert (
        spec.resolved_class_weights(tagging=True, multi_label=False, majority_share=0.94) == "sqrt_balanced"
    )
    assert spec.resolved_class_weights(tagging=True, multi_label=False, majority_share=0.928) == "none"
    assert spec.resolved_class_weights(tagging=True, multi_label=False, majority_share=0.83) == "none"
    assert spec.resolved_class_weights(tagging=True, multi_label=False) == "auto"  # the data decides
    assert majority_share({"O": 83, "B-PER": 10, "I-PER": 7}) == pytest.approx(0.83)
    assert majority_share({}) is None
    assert TrainingSpec().resolved_class_weights(tagging=False, multi_label=False) == "none"


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"training": {"max_steps": 5, "min_steps": 100}}, "has no effect with training.max_steps"),
        ({"training": {"class_weights": "balanced"}}, "class_weights applies to classifier heads"),
        ({"training": {"head_lr_ratio": 5}}, "head_lr_ratio applies to classifier heads"),
        (
            {
                "task": {"type": "classification", "multi_label": True},
                "training": {"class_weights": "balanced"},
            },
            "class_weights applies to single-label classifier and tagging heads",
        ),
    ],
)
def test_training_keys_that_would_be_ignored_are_errors(tmp_path, sections, message):
    recipe = {"name": "x", "model": {"name_or_path": "m"}, "data": {"path": "a.jsonl"}, **sections}
    with pytest.raises(RecipeError, match=re.escape(message)):
        recipe_from_dict(recipe, base_dir=tmp_path)


# --- end to end on a tiny BERT -----------------------------------------------------------------

NAMES = ["john", "mary", "ali", "paris"]
FILLER = [
    "the",
    "patient",
    "was",
    "admitted",
    "with",
    "chest",
    "pain",
    "and",
    "card",
    "charged",
    "twice",
    "for",
    "rent",
]
OLD_DEFAULTS = {"min_steps": 0, "head_lr_ratio": 1, "lora_plus_ratio": 1, "class_weights": "none"}


def imbalanced_tagging_rows(n: int, offset: int = 0) -> list[dict]:
    """Twenty tokens a sentence, one of them an entity (B-PER, or B-LOC for `paris`): `O` is 95% of the tags."""
    rows = []
    for i in range(offset, offset + n):
        words = [FILLER[(i * 7 + k * 3) % len(FILLER)] for k in range(19)]
        tags = ["O"] * 20
        position, name = (i * 5) % 18, NAMES[i % len(NAMES)]
        words.insert(position, name)
        tags[position] = "B-LOC" if name == "paris" else "B-PER"
        rows.append({"tokens": words, "tags": tags})
    return rows


def tagging_run(tmp_path: Path, model_dir: Path, training: dict, lines: list[str] | None = None) -> dict:
    from lora_adapt.pipeline import run

    train = write_jsonl(tmp_path / "train.jsonl", imbalanced_tagging_rows(40))
    test = write_jsonl(tmp_path / "test.jsonl", imbalanced_tagging_rows(30, offset=1000))
    recipe = recipe_from_dict(
        {
            "name": "tagging",
            "task": {"type": "token_classification"},
            "model": {"name_or_path": str(model_dir)},
            "data": {"train": str(train), "test": str(test), "split": {"validation": 0, "test": 0}},
            "training": {"batch_size": 8, "learning_rate": 5e-3, "progress_bar": False, **training},
            "evaluation": {"baselines": ["majority"]},
            "output": {"dir": str(tmp_path / "runs")},
        }
    )
    return run(recipe, overwrite=True, echo=(lines.append if lines is not None else lambda _: None)).metrics


def test_old_defaults_tag_everything_O_on_small_imbalanced_data_and_the_new_ones_do_not(
    tmp_path, tiny_bert_dir
):
    old = tagging_run(tmp_path, tiny_bert_dir, OLD_DEFAULTS)
    assert old["train"]["global_step"] == 15  # 40 sentences, batch 8, 3 epochs
    assert old["task"]["entities_predicted"] == 0 and old["task"]["f1"] == 0.0
    assert (
        old["health"]["collapsed"] and old["health"]["one_label"] and old["health"]["dominant_label"] == "O"
    )
    assert any("only 15 optimizer steps" in cause for cause in old["health"]["likely_causes"])
    lines: list[str] = []
    new = tagging_run(tmp_path, tiny_bert_dir, {}, lines)
    # `O` is 95% of the tags: class_weights auto weights them, and says so
    assert (
        "training.class_weights auto: sqrt_balanced (the most frequent tag is 95.0% of the training tags"
        in ("\n".join(lines))
    )
    assert new["train"]["global_step"] >= 300  # training.min_steps: auto
    assert new["task"]["f1"] >= 0.8 and not new["health"]["collapsed"] and new["health"]["ok"]


def test_a_collapsed_run_says_so_in_the_cli_report_and_metrics(tmp_path, tiny_bert_dir):

    rows = ticket_rows(60)
    train = write_jsonl(tmp_path / "train.jsonl", [r for r in rows if r["label"] == "billing"])
    test = write_jsonl(tmp_path / "test.jsonl", rows[:30])  # three labels; training saw only one
    recipe = {
        "name": "task",
        "task": {"type": "classification"},
        "model": {"name_or_path": str(tiny_bert_dir)},
        "data": {"train": str(train), "test": str(test), "split": {"validation": 0}},
        "training": {"max_steps": 2, "batch_size": 8, "progress_bar": False},
        "evaluation": {"baselines": ["tfidf_logreg"]},
        "output": {"dir": str(tmp_path / "runs")},
    }
    out = run_cli("run", str(save_recipe(tmp_path, recipe, {}))).output
    assert "without a training example: 20 test row(s)" in out  # the unseen labels are scored, not dropped
    assert "WARNING: COLLAPSED: the adapted model answers 'billing' for 100.0% of the scored units" in out
    assert "likely causes:" in out and "| COLLAPSED (see the warnings)" in out
    assert out.rstrip().splitlines()[-1].startswith("WARNING: ")  # the run's last word is the warning
    health = read_metrics(tmp_path)["health"]
    assert health["collapsed"] and health["one_label"] and health["below_majority"] and not health["ok"]
    assert health["dominant_label"] == "billing" and health["gold_share"] == pytest.approx(1 / 3, abs=0.01)
    assert read_metrics(tmp_path)["task"]["n"] == 30
    report = (tmp_path / "runs" / "task" / A.REPORT).read_text()
    assert "## Warning: the adapted model collapsed" in report and "Likely causes:" in report


def health_of(
    gold: list[str],
    predicted: list[str],
    adapted: float,
    tfidf: float | None = None,
    base: float | None = None,
) -> dict:
    from types import SimpleNamespace

    task = TaskSpec(type="classification")
    rows = [{"label": g} for g in gold]
    ctx = SimpleNamespace(kind="single", task=task, rows=rows, labels=("ham", "spam"), mode="head")
    counts = Counter(gold)
    prepared = SimpleNamespace(raw={"train": ctx.rows}, stats={"label_counts": {"train": dict(counts)}})
    recipe = SimpleNamespace(training=TrainingSpec())
    baselines = {"tfidf_logreg": {"f1_macro": tfidf}} if tfidf is not None else {}
    if base is not None:
        baselines["base_model"] = {"f1_macro": base}
    return assess(ctx, gold, predicted, {"f1_macro": adapted}, baselines, recipe, prepared, 500)


def test_health_tells_an_imbalanced_but_working_model_from_a_collapsed_one():
    gold = ["ham"] * 87 + ["spam"] * 13
    working = health_of(gold, ["ham"] * 90 + ["spam"] * 10, adapted=0.9, tfidf=0.85)
    assert working["ok"] and not working["collapsed"] and working["warnings"] == []
    assert working["majority_score"] == pytest.approx(0.4652, abs=1e-3)  # computed: the recipe did not ask
    collapsed = health_of(gold, ["ham"] * 99 + ["spam"], adapted=0.55)
    assert collapsed["one_label"] and collapsed["collapsed"] and not collapsed["below_majority"]
    assert collapsed["dominant_share"] == 0.99 and collapsed["gold_share"] == 0.87
    assert any("'ham' is 87% of the training labels" in c for c in collapsed["likely_causes"])
    below = health_of(gold, ["ham"] * 90 + ["spam"] * 10, adapted=0.8, tfidf=0.85)
    assert below["below_tfidf"] and not below["collapsed"] and not below["ok"]
    assert below["warnings"][0].startswith("BELOW BASELINE: f1_macro 0.8000 is below TF-IDF")
    assert verdict_suffix(below) == " | BELOW TF-IDF + LR (see the warnings)"
    # above TF-IDF but below the frozen encoder's linear probe: the adapter added nothing
    probe = health_of(gold, ["ham"] * 90 + ["spam"] * 10, adapted=0.86, tfidf=0.77, base=0.88)
    assert probe["below_base"] and not probe["below_tfidf"] and not probe["ok"]
    assert probe["base_score"] == 0.88 and probe["likely_causes"]
    assert probe["warnings"] == [
        "BELOW BASELINE: f1_macro 0.8600 is below a linear probe on the frozen base model's features "
        "(0.8800); the adapter did not improve on what the base already gives"
    ]
    assert verdict_suffix(probe) == " | BELOW THE BASE MODEL (see the warnings)"
    assert health_of(gold, ["ham"] * 90 + ["spam"] * 10, adapted=0.9, tfidf=0.77, base=0.88)["ok"]


def test_dry_run_counts_the_steps_the_run_would_train(tmp_path, tiny_bert_dir):
    data = write_jsonl(tmp_path / "t.jsonl", ticket_rows(48))
    recipe = task_recipe(
        tmp_path,
        tiny_bert_dir,
        {"path": str(data)},
        {"type": "classification"},
        training={"min_steps": 300, "max_steps": None, "batch_size": 4, "epochs": 3},
    )
    result = run_cli("run", str(recipe), "--dry-run")
    assert "small data:" in result.output and ", 300 optimizer steps; nothing written" in result.output


def test_health_flags_a_constant_or_worse_than_the_mean_regression_model():
    """Pearson is undefined for the mean predictor and for a constant model: errors are compared instead."""
    from types import SimpleNamespace

    from lora_adapt.evaluation.scoring import score

    task = TaskSpec(type="regression")
    rows = [{"text": "x", "targets": [v]} for v in (1.0, 2.0, 3.0, 4.0)]
    ctx = SimpleNamespace(kind="regression", rows=rows, labels=("label",), task=task)
    prepared = SimpleNamespace(
        raw={"train": [{"text": "a", "targets": [1.0]}, {"text": "b", "targets": [4.0]}]}, stats={}
    )
    recipe = SimpleNamespace(training=TrainingSpec())
    gold = [r["targets"] for r in rows]

    def health(predictions):
        metrics = score("regression", gold, predictions, ("label",), task)
        return assess(ctx, gold, predictions, metrics, {}, recipe, prepared, 300)

    constant = health([[2.5]] * 4)
    assert constant["collapsed"] and constant["one_label"] and "COLLAPSED" in constant["warnings"][0]
    wild = health([[40.0], [1.0], [80.0], [3.0]])
    assert wild["collapsed"] and wild["below_majority"] and "training-mean predictor" in wild["warnings"][0]
    good = health([[1.1], [2.1], [2.9], [4.2]])
    assert good["ok"] and not good["warnings"]


def test_a_resume_refuses_class_weights_auto_resolved_otherwise_than_when_the_run_started(
    tmp_path, tiny_bert_dir, monkeypatch
):
    """What `auto` resolved to from the data is recorded at the start; a version whose rule resolves the same
    recipe and data otherwise (here: the tagging threshold moved above the data's 95% `O`) cannot resume
    it with another loss."""
    import errno

    import torch

    from lora_adapt.errors import UsageError
    from lora_adapt.pipeline import run
    from lora_adapt.recipe import schema
    from lora_adapt.rundir_lock import read_start

    train = write_jsonl(tmp_path / "train.jsonl", imbalanced_tagging_rows(40))
    recipe = recipe_from_dict(
        {
            "name": "tagging",
            "task": {"type": "token_classification"},
            "model": {"name_or_path": str(tiny_bert_dir)},
            "data": {"train": str(train), "split": {"validation": 0, "test": 0.25}},
            "training": {"batch_size": 8, "max_steps": 4, "save_steps": 2, "progress_bar": False},
            "evaluation": {"baselines": []},
            "output": {"dir": str(tmp_path / "runs")},
        }
    )
    real = torch.save

    def full_at_step_4(obj, f, *args, **kwargs):
        if "checkpoint-4" in str(f):
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_at_step_4)
    with pytest.raises(Exception, match="space"):
        run(recipe, echo=lambda _: None)
    monkeypatch.setattr(torch, "save", real)
    stage = A.in_progress_dir(tmp_path / "runs" / "tagging")
    assert read_start(stage)["resolved"] == {"training.class_weights": "sqrt_balanced"}

    monkeypatch.setattr(schema, "AUTO_WEIGHTS_MAJORITY_SHARE", 0.99)
    with pytest.raises(UsageError) as refused:
        run(recipe, resume=True, echo=lambda _: None)
    assert "training.class_weights (sqrt_balanced -> none)" in refused.value.message
    assert (stage / A.CHECKPOINTS_DIR / "checkpoint-2").is_dir()  # nothing lost

    monkeypatch.setattr(schema, "AUTO_WEIGHTS_MAJORITY_SHARE", 0.94)
    resumed = run(recipe, resume=True, echo=lambda _: None)
    assert resumed.metrics["train"]["global_step"] == 4
