"""Helpers the tests share: data and recipe writers, the CLI runner, small datasets (no fixtures here)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from lora_adapt import artifacts as A
from lora_adapt.cli import main

TOPICS = ["billing", "outage", "meter", "refund", "password", "contract", "rent", "delivery"]


TICKET_TOPICS = {
    "billing": ["my bill was charged twice", "the invoice amount is wrong", "refund the extra charge"],
    "outage": ["the power is out again", "no electricity since this morning", "the lights went dark"],
    "meter": ["the meter reading looks wrong", "please read my meter", "the meter display is blank"],
}


def instruction_rows(n: int = 48) -> list[dict]:
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        rows.append(
            {
                "instruction": f"Summarise ticket {i} about {topic}.",
                "input": f"The customer writes about {topic} number {i}.",
                "output": f"A {topic} ticket.",
            }
        )
    return rows


def ticket_rows(n: int, offset: int = 0) -> list[dict]:
    rows = []
    for i in range(offset, offset + n):
        label = list(TICKET_TOPICS)[i % 3]
        rows.append({"text": f"{TICKET_TOPICS[label][i % 2 + (i // 3) % 2]}, ticket {i}", "label": label})
    return rows


def tagging_rows(n: int) -> list[dict]:
    names = [("John", "Smith"), ("Mary", "Jones"), ("Ali", "Khan")]
    places = ["Paris", "Berlin", "Madrid"]
    rows = []
    for i in range(n):
        first, last = names[i % 3]
        tokens = [first, last, "flew", "to", places[i % 3], "on", "day", str(i)]
        rows.append({"tokens": tokens, "tags": ["B-PER", "I-PER", "O", "O", "B-LOC", "O", "O", "O"]})
    return rows


SEMEVAL = [
    ("The <e1>fire</e1> was caused by a <e2>spark</e2> in the wiring.", "Cause-Effect(e2,e1)"),
    ("The <e1>storm</e1> caused heavy <e2>damage</e2> along the coast.", "Cause-Effect(e1,e2)"),
    ("The <e1>keys</e1> are in the <e2>drawer</e2> by the door.", "Content-Container(e1,e2)"),
    ("We walked through the <e1>park</e1> after <e2>lunch</e2> today.", "Other"),
]


def write_semeval(path: Path, n: int) -> Path:
    """A SemEval-2010 Task 8 file of ``n`` sentences cycling through SEMEVAL."""
    lines = []
    for i in range(n):
        text, label = SEMEVAL[i % 4]
        lines += [f'{i + 1}\t"{text[:-1]} (report {i})."', label, "Comment:", ""]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def save_recipe(tmp_path: Path, recipe: dict, sections: dict) -> Path:
    """Write ``recipe`` with each of ``sections`` merged over its section, as tmp_path/recipe.yaml."""
    for key, value in sections.items():
        recipe[key] = {**recipe.get(key, {}), **value}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def sft_recipe(tmp_path: Path, model_dir: Path, data_path: Path, **sections) -> Path:
    recipe = {
        "name": "tiny",
        "model": {"name_or_path": str(model_dir)},
        "adapter": {"rank": 4, "alpha": 8, "dropout": 0.0},
        "data": {
            "path": str(data_path),
            "max_seq_length": 128,
            "split": {"validation": 0.125, "test": 0.125},
        },
        "training": {
            "max_steps": 6,
            "learning_rate": 5e-3,
            "batch_size": 4,
            "logging_steps": 1,
            "progress_bar": False,
            "save_steps": 3,
        },
        "output": {"dir": str(tmp_path / "runs")},
    }
    return save_recipe(tmp_path, recipe, sections)


def task_recipe(tmp_path: Path, model_dir: Path, data: dict, task: dict, **sections) -> Path:
    recipe = {
        "name": "task",
        "task": task,
        "model": {"name_or_path": str(model_dir)},
        "adapter": {"rank": 4, "alpha": 8, "dropout": 0.0},
        "data": {"max_seq_length": 96, **data},
        "training": {
            "epochs": 2,
            "min_steps": 0,  # plumbing tests keep their few steps; test_small_data covers min_steps: auto
            "learning_rate": 5e-3,
            "batch_size": 8,
            "logging_steps": 5,
            "progress_bar": False,
        },
        "evaluation": {"baselines": ["majority", "tfidf_logreg", "base_model"], "samples_in_report": 4},
        "output": {"dir": str(tmp_path / "runs")},
    }
    return save_recipe(tmp_path, recipe, sections)


def plan_recipe(tmp_path: Path, model: str, **sections) -> Path:
    raw = {"name": "plan-test", "model": {"name_or_path": model}, "data": {"path": "train.jsonl"}, **sections}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def run_cli(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def read_metrics(tmp_path: Path) -> dict:
    return A.read_json(tmp_path / "runs" / "task" / A.METRICS)
