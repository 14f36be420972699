"""The test split, scored once, for the best trial only (never used to choose)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..recipe.derived import LOSS, TASK_METRICS


def score_test(run_dir: Path, echo, metric: str | None = None) -> dict[str, Any]:
    """The best trial's test scores: the task's scalar scores (task runs, reloaded as `lora-adapt eval`
    reloads a run), and the test loss (and perplexity) for sft or when the sweep's objective is the loss."""
    from ..rundir import read_run

    run = read_run(run_dir)
    if run.task_type == "sft":
        return _test_loss(run, echo)
    scores = _task_scores(run_dir, echo)
    if metric == LOSS:
        loss = _test_loss(run, echo)
        scores.update({k: v for k, v in loss.items() if k != "rows"})
    return scores


def _task_scores(run_dir: Path, echo) -> dict[str, Any]:
    from ..rescore import evaluate_run

    scored = evaluate_run(run_dir, data_file=None, split="test", baselines=(), max_samples=None, echo=echo)
    task = scored.get("task") or {}
    kind = (scored.get("evaluation") or {}).get("kind")
    names = TASK_METRICS.get(kind or "", ())
    return {"rows": (scored.get("evaluation") or {}).get("rows"), **{n: task[n] for n in names if n in task}}


def _test_loss(run, echo) -> dict[str, Any]:
    from ..artifacts import scratch_dir
    from ..modeling import load_adapted
    from ..runtime import make_trainer, recipe_data, resolve_runtime
    from ..training import evaluate_loss

    recipe = run.recipe
    if recipe is None:
        return {}
    adapted = load_adapted(run.path)
    prepared = recipe_data(recipe, adapted.tokenizer)  # through the data cache, as the trials read it
    if prepared.test is None or not len(prepared.test):
        return {}
    runtime = resolve_runtime(recipe)
    with scratch_dir("sweep-test") as tmp:
        trainer = make_trainer(
            recipe, runtime, adapted.model, adapted.tokenizer, prepared, Path(tmp), [], echo=echo
        )
        scores = evaluate_loss(trainer, prepared.test, "test")
    return {"rows": len(prepared.test), **scores}
