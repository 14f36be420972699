"""Reload a finished run (base + adapter, pooled and labelled as trained) and score it again.

``evaluate_run`` is what `lora-adapt eval RUN_DIR` does, without printing: like ``pipeline.run`` it
composes the stages (export.run reads the run, modeling reloads the model, data prepares rows,
evaluation scores), so it lives beside the pipeline rather than in the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class _RowsOnly:
    """Stands in for PreparedData when only new rows are scored (no training data needed)."""

    labels: tuple[str, ...] | None
    raw: dict[str, list[dict]] = field(default_factory=dict)
    train: Any = None
    validation: Any = None
    test: Any = None


def evaluate_run(
    run_dir: Path,
    *,
    data_file: Path | None,
    split: str,
    baselines: tuple[str, ...],
    max_samples: int | None,
    echo,
) -> dict[str, Any]:
    """Reload base + adapter from ``run_dir`` and score them (the `eval` command without printing)."""
    from .errors import UsageError
    from .evaluation import evaluate_task
    from .export.run import load_run

    run = load_run(run_dir)
    if run.recipe is None:
        raise UsageError(
            f"{run_dir} has no readable recipe.resolved.yaml", hint="rerun the recipe with this version"
        )
    recipe = _eval_recipe(run, max_samples)
    mode = (run.manifest.get("task") or {}).get("mode") or "generative"
    if recipe.task.type == "sft":
        raise UsageError(
            "`lora-adapt eval` scores task runs (classification, tagging, relations, extraction)",
            hint="an sft run's held-out loss and perplexity are in its metrics.json",
        )
    model, tokenizer = _load_adapted(run, recipe, mode)
    echo(f"loaded {recipe.model.name_or_path} + adapter from {run.adapter_dir}")
    prepared: Any = _RowsOnly(labels=recipe.task.labels)
    if data_file is None or baselines:  # the recipe's splits are needed (to score, or to train baselines)
        from .data import prepare_data

        prepared = prepare_data(recipe.data, recipe.task, tokenizer, head=mode == "head")
    rows, dataset = _file_rows(data_file, recipe, mode, tokenizer) if data_file is not None else (None, None)
    return evaluate_task(
        recipe=recipe,
        mode=mode,
        model=model,
        tokenizer=tokenizer,
        prepared=prepared,
        run_dir=None,
        echo=echo,
        split=data_file.stem if data_file else split,
        rows=rows,
        dataset=dataset,
        baselines=baselines,
    )


def _eval_recipe(run, max_samples: int | None):
    """The run's recipe with the label set it was trained on pinned (so new data is checked against it)."""
    recipe = run.recipe
    labels = (run.manifest.get("task") or {}).get("labels")
    task = recipe.task.model_copy(update={"labels": tuple(labels)}) if labels else recipe.task
    evaluation = recipe.evaluation
    if max_samples is not None:
        evaluation = evaluation.model_copy(update={"max_samples": max_samples})
    return recipe.model_copy(update={"task": task, "evaluation": evaluation})


def _load_adapted(run, recipe, mode: str):
    import transformers
    from peft import PeftModel

    from .modeling import load_model, load_tokenizer

    transformers.logging.set_verbosity_error()  # the expected "classifier newly initialized" report is noise here
    transformers.utils.logging.disable_progress_bar()
    has_own = (run.adapter_dir / "tokenizer_config.json").is_file()
    spec = recipe.model.model_copy(update={"tokenizer": str(run.adapter_dir)}) if has_own else recipe.model
    tokenizer = load_tokenizer(spec)
    loaded = load_model(
        recipe.model,
        recipe.quantization,
        head=run.head,
        labels=run.labels,
        multi_label=recipe.task.multi_label,
        tokenizer=tokenizer,
        pooling=run.pooling,
    )
    model = PeftModel.from_pretrained(loaded.model, str(run.adapter_dir))
    model.eval()
    return model, tokenizer


def _file_rows(path: Path, recipe, mode: str, tokenizer) -> tuple[list[dict] | None, Any]:
    """Canonical rows of ``path`` and, in head mode, their tokenized form (aligned row for row)."""
    from .data import load_rows_from_file

    rows = load_rows_from_file(path, recipe.data, recipe.task)
    if mode != "head":
        return rows, None
    import datasets

    # The data module tokenizes head rows in tokenize_head (not yet part of its public API).
    from .data.tokenization import tokenize_head

    layout = "tagging" if recipe.task.type == "token_classification" else "classification"
    counts = tokenize_head(
        rows, layout, tuple(recipe.task.labels or ()), {"spec": recipe.data, "tokenizer": tokenizer}
    )
    return rows, datasets.Dataset.from_dict(counts.columns)
