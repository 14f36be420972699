"""Score a finished run again: reload its base + adapter (checked, pooled and labelled as trained) and
evaluate it on one of its recipe's splits or on a new file.

``evaluate_run`` is what `lora-adapt eval RUN_DIR` does, without printing; like ``pipeline.run`` it
composes the stages (rundir reads the run, modeling reloads the model, data prepares rows, evaluation
scores), so it lives beside the pipeline rather than in the CLI. The run directory is never written.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import UsageError
from .recipe import Recipe
from .recipe.derived import REGRESSION_TASKS
from .rundir import RunDir, read_run


@dataclass(frozen=True)
class _RowsOnly:
    """Stands in for PreparedData when only new rows are scored (no training data needed)."""

    labels: tuple[str, ...] | None
    raw: dict[str, list[dict]] = field(default_factory=dict)
    train: Any = None
    validation: Any = None
    test: Any = None
    stats: dict[str, Any] = field(default_factory=dict)


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
    from .evaluation import evaluate_task
    from .full_finetune import trained_baselines
    from .modeling import load_adapted
    from .quiet import quiet_libraries
    from .runtime import recipe_data, resolve_runtime

    run = read_run(run_dir)
    recipe = _eval_recipe(run, max_samples)
    if recipe.task.type == "sft":
        raise UsageError(
            "`lora-adapt eval` scores task runs (classification, tagging, relations, extraction)",
            hint="an sft run's held-out loss and perplexity are in its metrics.json",
        )
    quiet_libraries()
    adapted = load_adapted(run.path)
    echo(f"loaded {adapted.loaded.source.load_path} + adapter from {run.adapter_dir}")
    tokenizer, mode = adapted.tokenizer, run.mode
    targets = run.task.get("targets")  # regression: the head's recorded scaling is what decodes its outputs
    prepared: Any = _RowsOnly(labels=run.labels or recipe.task.labels, stats={"targets": targets})
    if data_file is None or baselines:  # the recipe's splits are needed (to score, or to train baselines)
        prepared = recipe_data(recipe, tokenizer)
        if targets is not None:
            prepared = replace(prepared, stats={**prepared.stats, "targets": targets})
    rows, dataset = (
        _file_rows(data_file, recipe, mode, tokenizer, prepared) if data_file is not None else (None, None)
    )
    trained = (
        trained_baselines(recipe, resolve_runtime(recipe), tokenizer, prepared, echo) if baselines else None
    )
    return evaluate_task(
        recipe=recipe,
        mode=mode,
        model=adapted.model,
        tokenizer=tokenizer,
        prepared=prepared,
        run_dir=None,
        echo=echo,
        split=data_file.stem if data_file else split,
        rows=rows,
        dataset=dataset,
        baselines=baselines,
        trained=trained,
    )


def _eval_recipe(run: RunDir, max_samples: int | None) -> Recipe:
    """The run's recipe with the label set it was trained on pinned (so new data is checked against it)."""
    if run.recipe is None:
        raise UsageError(
            f"{run.path} has no recipe.resolved.yaml this version can read",
            hint="rerun the recipe with this version of lora-adapt",
        )
    recipe = run.recipe
    labels = run.task.get("labels")
    pin = bool(labels) and recipe.task.type not in REGRESSION_TASKS  # regression "labels": its target names
    task = recipe.task.model_copy(update={"labels": tuple(labels or ())}) if pin else recipe.task
    evaluation = recipe.evaluation
    if max_samples is not None:
        evaluation = evaluation.model_copy(update={"max_samples": max_samples})
    return recipe.model_copy(update={"task": task, "evaluation": evaluation})


def _file_rows(path: Path, recipe: Recipe, mode: str, tokenizer, prepared) -> tuple[list[dict] | None, Any]:
    """Canonical rows of ``path`` and, in head mode, their tokenized form (aligned row for row)."""
    from .data import load_rows_from_file, tokenize_head_rows

    rows = load_rows_from_file(path, recipe.data, recipe.task)
    if mode != "head":
        return rows, None
    scaling = (prepared.stats.get("targets") or {}).get("scaling")
    return rows, tokenize_head_rows(rows, recipe.data, recipe.task, tokenizer, prepared.labels, scaling)
