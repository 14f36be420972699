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


def sweep_recipe(tmp_path: Path, model_dir: Path, sweep: dict, rows: int = 30, **sections) -> Path:
    """A tiny head-classification recipe (2 optimizer steps, an evaluation after each) with a `sweep` section."""
    data = write_jsonl(tmp_path / "tickets.jsonl", ticket_rows(rows))
    recipe = {
        "name": "swept",
        "task": {"type": "classification"},
        "model": {"name_or_path": str(model_dir)},
        "adapter": {"rank": 2, "alpha": 4, "dropout": 0.0},
        "data": {"path": str(data), "max_seq_length": 32, "split": {"validation": 0.3, "test": 0.2}},
        "training": {
            "max_steps": 2,
            "eval_steps": 1,
            "learning_rate": 1e-2,
            "batch_size": 8,
            "logging_steps": 1,
            "progress_bar": False,
        },
        "evaluation": {"baselines": []},
        "output": {"dir": str(tmp_path / "runs")},
        "sweep": {"dir": str(tmp_path / "sweep"), **sweep},
    }
    return save_recipe(tmp_path, recipe, sections)


# --- adapters per domain (predict, AdapterSet, serve, compose, route): tiny runs shared per session ---

SILENT = {
    "training": {"max_steps": 3},
    "evaluation": {"baselines": ["majority"], "explanations": {"rows": 0}},
}


def _tiny_run(tmp: Path, name: str, recipe_path: Path) -> Path:
    from lora_adapt.pipeline import run
    from lora_adapt.recipe import load_recipe

    return run(load_recipe(recipe_path, [f"name={name}"]), echo=lambda _: None).run_dir


def build_domain_runs(root: Path, bert: Path, qwen: Path) -> dict[str, Path]:
    """Tiny finished runs: ``tickets`` (3-label head on support tickets), ``binary`` (2-label head on travel
    sentences: another domain), ``tags`` (tagging head) on the tiny BERT; ``chat`` (sft, ChatML), ``chat2`` (its copy with other weights), ``answer`` (generative
    classification) on the tiny Qwen2."""
    runs: dict[str, Path] = {}
    split = {"validation": 0.15, "test": 0.2}
    head = {"type": "classification", "pooling": "mean"}
    for name, rows in (
        ("tickets", ticket_rows(36)),
        ("binary", travel_rows(36)),
    ):
        folder = root / name
        folder.mkdir()
        data = write_jsonl(folder / "data.jsonl", rows)
        recipe = task_recipe(folder, bert, {"path": str(data), "split": split}, head, **SILENT)
        runs[name] = _tiny_run(folder, name, recipe)
    folder = root / "tags"
    folder.mkdir()
    data = write_jsonl(folder / "data.jsonl", tagging_rows(30))
    recipe = task_recipe(
        folder, bert, {"path": str(data), "split": split}, {"type": "token_classification"}, **SILENT
    )
    runs["tags"] = _tiny_run(folder, "tags", recipe)
    folder = root / "chat"
    folder.mkdir()
    data = write_jsonl(folder / "data.jsonl", instruction_rows(40))
    runs["chat"] = _tiny_run(folder, "chat", sft_recipe(folder, qwen, data, training={"max_steps": 3}))
    runs["chat2"] = copy_run(runs["chat"], root / "chat2" / "chat2", scale=3.0)
    folder = root / "answer"
    folder.mkdir()
    data = write_jsonl(folder / "data.jsonl", ticket_rows(36))
    recipe = task_recipe(
        folder,
        qwen,
        {"path": str(data), "split": split},
        {"type": "classification", "mode": "generative"},
        **SILENT,
    )
    runs["answer"] = _tiny_run(folder, "answer", recipe)
    return runs


def travel_rows(n: int) -> list[dict]:
    """Sentences of another domain than the tickets, labelled by destination (``paris`` or ``other``)."""
    rows = []
    for i, row in enumerate(tagging_rows(n)):
        city = row["tokens"][4]
        rows.append(
            {
                "text": f"{' '.join(row['tokens'])} for trip {i}",
                "label": "paris" if city == "Paris" else "other",
            }
        )
    return rows


def copy_run(run_dir: Path, to: Path, *, scale: float) -> Path:
    """A copy of a finished run named after ``to`` whose LoRA weights are scaled (so it answers differently)."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(run_dir, to)
    weights_file = to / A.ADAPTER_DIR / A.ADAPTER_WEIGHTS
    weights = load_file(weights_file)
    save_file({k: v * scale if "lora_" in k else v for k, v in weights.items()}, weights_file)
    for file in (to / A.MANIFEST, to / A.ADAPTER_DIR / A.ADAPTER_RECORD):
        record = A.read_json(file)
        A.atomic_write_json(file, {**record, "name": to.name})
    return to
