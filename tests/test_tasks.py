"""Domain tasks end to end: head and generative classification, tagging, relations, `eval`, real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import (
    read_metrics,
    run_cli,
    tagging_rows,
    task_recipe,
    ticket_rows,
    write_jsonl,
    write_semeval,
)

from lora_adapt import artifacts as A
from lora_adapt.cli import main

TASK_KEYS = {"evaluation", "task", "baselines", "samples", "summary"}
SINGLE_LABEL_KEYS = {
    "n",
    "invalid",
    "accuracy",
    "f1_macro",
    "f1_micro",
    "f1_weighted",
    "precision_macro",
    "recall_macro",
    "per_class",
    "confusion_matrix",
    "method",
    "seconds",
}


def test_head_classification_run_and_eval_on_new_data(tmp_path, tiny_bert_dir):
    data = write_jsonl(tmp_path / "tickets.jsonl", ticket_rows(42))
    recipe = task_recipe(
        tmp_path,
        tiny_bert_dir,
        {"path": str(data), "split": {"validation": 0.15, "test": 0.3}},
        {"type": "classification"},
    )
    out = run_cli("run", str(recipe)).output
    assert "| **adapted (LoRA)** |" in out and "TF-IDF + logistic regression" in out
    run_dir = tmp_path / "runs" / "task"
    assert {p.name for p in run_dir.iterdir()} == set(A.RUN_FILES) | {A.CONFUSION_PNG}
    assert (run_dir / A.CONFUSION_PNG).read_bytes()[:4] == b"\x89PNG"
    metrics = read_metrics(tmp_path)
    assert TASK_KEYS <= set(metrics) and metrics["evaluation"]["kind"] == "single"
    assert metrics["evaluation"]["headline"] == "f1_macro" and metrics["evaluation"]["rows"] == 13
    assert SINGLE_LABEL_KEYS <= set(metrics["task"])
    assert set(metrics["baselines"]) == {"majority", "tfidf_logreg", "base_model"}
    for result in metrics["baselines"].values():
        assert {"accuracy", "f1_macro", "per_class", "method"} <= set(result)
    assert "linear probe" in metrics["baselines"]["base_model"]["method"]
    assert len(metrics["samples"]) == 4 and metrics["summary"].startswith("test (13 rows), f1_macro")
    report = (run_dir / A.REPORT).read_text()
    assert (
        "## Results on the test split" in report and "majority class" in report and "## Per class" in report
    )

    new = write_jsonl(tmp_path / "new.jsonl", ticket_rows(9, offset=100))
    out_json = tmp_path / "eval.json"
    before = sorted(p.name for p in run_dir.rglob("*"))
    eval_out = run_cli("eval", str(run_dir), "--data", str(new), "--out", str(out_json)).output
    assert "new (9 rows), f1_macro: adapted" in eval_out
    scored = json.loads(out_json.read_text())
    assert scored["evaluation"]["rows"] == 9 and scored["task"]["n"] == 9 and scored["baselines"] == {}
    assert sorted(p.name for p in run_dir.rglob("*")) == before  # the run directory is left as it was


def test_eval_rejects_an_unknown_label_in_new_data(tmp_path, tiny_bert_dir):
    data = write_jsonl(tmp_path / "tickets.jsonl", ticket_rows(30))
    recipe = task_recipe(
        tmp_path,
        tiny_bert_dir,
        {"path": str(data)},
        {"type": "classification"},
        training={"max_steps": 2},
        evaluation={"baselines": []},
    )
    run_cli("run", str(recipe))
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "gas smell in the kitchen", "label": "gas_leak"}])
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "runs" / "task"), "--data", str(bad)])
    assert result.exit_code == 2 and "gas_leak" in result.output and "bad.jsonl:1" in result.output


def test_generative_classification_counts_unparseable_answers(tmp_path, tiny_llama_dir):
    data = write_jsonl(tmp_path / "tickets.jsonl", ticket_rows(30))
    recipe = task_recipe(
        tmp_path,
        tiny_llama_dir,
        {"path": str(data), "max_seq_length": 256},
        {"type": "classification", "mode": "generative"},
        training={"max_steps": 3},
        evaluation={"baselines": ["majority", "base_model"]},
    )
    run_cli("run", str(recipe))
    metrics = read_metrics(tmp_path)
    task = metrics["task"]
    assert metrics["evaluation"]["mode"] == "generative" and metrics["test"]["after"]["loss"] > 0
    n = metrics["evaluation"]["rows"]
    assert task["n"] == n and task["invalid"] > 0  # a random tiny model does not answer with a label
    assert task["accuracy"] <= (n - task["invalid"]) / n  # invalid answers are wrong, not dropped
    assert sum(row[-1] for row in task["confusion_matrix"]["matrix"]) == task["invalid"]
    assert task["constrained"]["invalid"] == 0 and task["constrained"]["n"] == n
    assert {"constrained", "invalid"} <= set(metrics["baselines"]["base_model"])
    assert all("output" in s for s in metrics["samples"])


def test_token_classification_head_scores_entities(tmp_path, tiny_bert_dir):
    data = write_jsonl(tmp_path / "ner.jsonl", tagging_rows(30))
    recipe = task_recipe(
        tmp_path,
        tiny_bert_dir,
        {"path": str(data)},
        {"type": "token_classification"},
        training={"max_steps": 4},
    )
    run_cli("run", str(recipe))
    metrics = read_metrics(tmp_path)
    assert metrics["evaluation"]["kind"] == "tagging" and metrics["evaluation"]["headline"] == "f1"
    task = metrics["task"]
    assert {"precision", "recall", "f1", "f1_macro", "token_accuracy", "per_class"} <= set(task)
    assert metrics["baselines"]["majority"]["f1"] == 0.0  # all-O predicts no entity
    assert "token-level" in metrics["baselines"]["tfidf_logreg"]["method"]
    assert metrics["baselines"]["tfidf_logreg"]["f1"] == 1.0  # the word features see the pattern exactly
    assert not (tmp_path / "runs" / "task" / A.CONFUSION_PNG).exists()


def test_relation_classification_from_a_semeval_file(tmp_path, tiny_bert_dir):
    data = write_semeval(tmp_path / "TRAIN_FILE.TXT", 40)
    recipe = task_recipe(
        tmp_path,
        tiny_bert_dir,
        {"path": str(data), "file_format": "semeval", "split": {"validation": 0.1, "test": 0.3}},
        {"type": "relation_classification", "negative_label": "Other"},
        training={"max_steps": 4},
    )
    run_cli("run", str(recipe))
    metrics = read_metrics(tmp_path)
    task = metrics["task"]
    assert metrics["evaluation"]["headline"] == "f1_macro_official"
    assert {"f1_macro_official", "f1_macro_directed", "per_relation_official", "accuracy"} <= set(task)
    assert "Other" not in task["per_relation_official"] and task["negative_label"] == "Other"
    # majority answers one label everywhere: at best one relation type gets a non-zero F1
    assert metrics["baselines"]["majority"]["f1_macro_official"] <= 1 / len(task["per_relation_official"])
    assert (tmp_path / "runs" / "task" / A.CONFUSION_PNG).is_file()


# Real data through the shipped recipes (recipes/tasks/*.yaml, data paths ../shared/data): a short LoRA run
# per dataset must beat the majority class on the headline metric. 2-3 minutes each on 2 cores: marked slow.
REAL_DATA_RUNS = {
    "sms_spam": [
        "data.max_samples=200",
        "data.max_seq_length=48",
        "training.max_steps=40",
        "training.learning_rate=3e-3",
    ],
    "banking77": [
        "data.max_samples=400",
        "data.max_seq_length=32",
        "training.max_steps=40",
        "training.learning_rate=3e-3",
    ],
    "conll2003_ner": [
        "data.max_samples=200",
        "data.max_seq_length=64",
        "training.max_steps=40",
        "training.learning_rate=3e-3",
    ],
    "semeval2010_re": ["data.max_seq_length=64", "training.max_steps=40", "training.learning_rate=3e-3"],
}


@pytest.mark.slow  # real data: minutes each on 2 cores (run with -m slow)
@pytest.mark.slow  # real data: 2-3 minutes each on 2 cores (python -m pytest -m slow)
@pytest.mark.parametrize("dataset", list(REAL_DATA_RUNS))
def test_task_recipe_on_real_data_beats_majority(tmp_path, shared_data, dataset):
    import sys

    from lora_adapt.pipeline import run
    from lora_adapt.recipe import load_recipe

    path = Path(__file__).resolve().parents[1] / "recipes" / "tasks" / f"{dataset}.yaml"
    overrides = [
        *REAL_DATA_RUNS[dataset],
        "training.batch_size=16",
        "evaluation.baselines=[majority]",
        "evaluation.explanations.rows=0",  # explanations are tested in test_explain.py (here: minutes)
        f"output.dir={tmp_path}",
    ]
    if dataset == "semeval2010_re":  # seeded samples that keep every test label inside the training sample
        sys.path.insert(0, str(path.parents[2] / "benchmarks"))
        from tasks_bench import semeval_sample

        sampled, _ = semeval_sample(load_recipe(path), tmp_path, {"train": 600, "test": 200})
        overrides += sampled
    metrics = run(load_recipe(path, overrides), echo=lambda _: None).metrics
    headline = metrics["evaluation"]["headline"]
    assert metrics["evaluation"]["rows"] >= 150
    assert metrics["task"][headline] > metrics["baselines"]["majority"][headline] + 0.05, metrics["summary"]
