"""Task evaluation: score the adapted model on the test split beside its baselines.

Public API::

    evaluate_task(*, recipe, mode, model, tokenizer, prepared, run_dir, echo=print,
                  split="test", rows=None, dataset=None, baselines=None) -> dict

returns the task part of metrics.json (keys ``evaluation``, ``task``, ``baselines``, ``samples``,
``summary``; see DEVELOPERS.md, "metrics.json for tasks") and writes ``confusion_matrix.png``
into ``run_dir`` for single-label tasks. Pure metric functions live in ``metrics.py``; baselines in
``baselines.py`` / ``systems.py`` / ``full_finetune.py``; ``report.render_report`` renders report.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import artifacts as A
from ..errors import LoraAdaptError, UsageError
from ..recipe.derived import BASELINES, is_quantized
from . import baselines as B
from . import regression as R
from .baselines import BaselineSkipped
from .health import assess, health_lines, verdict_suffix
from .metrics import normalize_value
from .report import comparison_table, system_method
from .scoring import CONFUSION_KINDS, HEADLINE, gold_of, score, spans_from_tags, task_kind
from .systems import EvalContext, SystemOutput, linear_probe, run_model, seeded_sample

Echo = Callable[[str], None]
TrainedSystem = Callable[[], tuple[Any, dict[str, Any]]]
"""A baseline that is a trained model: called once, returns (model, info recorded with its scores)."""

__all__ = ["BaselineSkipped", "TrainedSystem", "evaluate_task"]


def evaluate_task(
    *,
    recipe,
    mode: str,
    model,
    tokenizer,
    prepared,
    run_dir: Path | None,
    echo: Echo = print,
    split: str = "test",
    rows: list[dict] | None = None,
    dataset=None,
    baselines: Sequence[str] | None = None,
    trained: Mapping[str, TrainedSystem] | None = None,
    trained_steps: int | None = None,
) -> dict[str, Any]:
    """Score ``model`` and the baselines on ``split`` of ``prepared`` (or on ``rows``/``dataset`` given).

    ``rows`` are canonical rows (and ``dataset`` their tokenized form in head mode) for scoring data
    other than the recipe's splits (``lora-adapt eval --data``). ``baselines`` defaults to
    ``recipe.evaluation.baselines``. Baselines that are trained models (``full_finetune``) come from
    ``trained``: ``{name: callable returning (model, info)}``, called when that baseline is scored;
    evaluation itself never trains a model. An unknown baseline name is an error; one that does not
    apply to the task is reported as skipped, with the reason. ``health`` (see health.py) says plainly
    when the adapted model collapsed or lost to a baseline; ``trained_steps`` feeds its likely causes."""
    started = time.perf_counter()
    ctx = _context(recipe, mode, tokenizer, prepared, split, rows, dataset)
    info = {
        "split": split,
        "rows": len(ctx.rows),
        "kind": ctx.kind,
        "mode": mode,
        "headline": HEADLINE[ctx.kind],
        "labels": list(ctx.labels or []),
        "notes": _notes(recipe, ctx, prepared),
    }
    if not ctx.rows:
        return {
            "evaluation": info,
            "task": None,
            "baselines": {},
            "samples": [],
            "summary": f"no {split} rows to score: task metrics skipped",
        }
    gold = gold_of(ctx.rows, ctx.kind, ctx.task)
    echo(f"evaluating the adapted model on {len(ctx.rows)} {split} rows ...")
    adapted = _timed(lambda: run_model(model, ctx))
    task_metrics = _metrics(ctx, gold, adapted[0], adapted[1], method=_adapter_note(recipe))
    names = tuple(recipe.evaluation.baselines if baselines is None else baselines)
    _check_baseline_names(names)
    results = {name: _baseline(name, recipe, ctx, gold, model, prepared, trained, echo) for name in names}
    if run_dir is not None and ctx.kind in CONFUSION_KINDS:
        from .plots import save_confusion_png

        save_confusion_png(
            task_metrics["confusion_matrix"], Path(run_dir) / A.CONFUSION_PNG, f"Confusion matrix ({split})"
        )
    info["seconds"] = round(time.perf_counter() - started, 2)
    health = assess(ctx, gold, adapted[0].predictions, task_metrics, results, recipe, prepared, trained_steps)
    out: dict[str, Any] = {
        "evaluation": info,
        "task": task_metrics,
        "baselines": results,
        "samples": _samples(ctx, gold, adapted[0], recipe.evaluation.samples_in_report),
        "health": health,
    }
    out["summary"] = _summary(out)
    echo(comparison_table(out))
    for line in health_lines(health):
        echo(line)
    return out


def _context(recipe, mode: str, tokenizer, prepared, split: str, rows, dataset) -> EvalContext:
    kind = task_kind(recipe.task, mode)
    if rows is None:
        rows = list(prepared.raw.get(split) or [])
        dataset = getattr(prepared, split, None) if mode == "head" else None
    if mode == "head" and rows and (dataset is None or len(dataset) != len(rows)):
        raise LoraAdaptError(
            f"internal: the tokenized {split} split has {0 if dataset is None else len(dataset)} rows "
            f"but the cleaned split has {len(rows)}; head-mode evaluation needs them aligned"
        )
    available = len(rows)
    keep = seeded_sample(len(rows), recipe.evaluation.max_samples, recipe.training.seed)
    if keep is not None:
        rows = [rows[i] for i in keep]
        dataset = dataset.select(keep) if dataset is not None else None
    return EvalContext(
        **EvalContext.stats_of(prepared),
        task=recipe.task,
        data=recipe.data,
        evaluation=recipe.evaluation,
        kind=kind,
        mode=mode,
        labels=prepared.labels,
        tokenizer=tokenizer,
        rows=rows,
        dataset=dataset,
        seed=recipe.training.seed,
        available=available,
    )


def _notes(recipe, ctx: EvalContext, prepared) -> list[str]:
    notes = []
    sample = (getattr(prepared, "stats", None) or {}).get("train_sample")
    if sample and sample["kept"] < sample["available"]:
        kind = "stratified " if sample["stratified"] else ""
        notes.append(
            f"data.max_train_samples = {sample['limit']}: trained on a seeded {kind}sample of {sample['kept']} "
            f"of the {sample['available']} training rows (seed {sample['seed']}); validation and test kept whole"
        )
    if ctx.available > len(ctx.rows):
        notes.append(
            f"scored a seeded sample of {len(ctx.rows)} of the {ctx.available} rows (evaluation.max_samples)"
        )
    if recipe.data.max_samples is not None:
        notes.append(
            f"data.max_samples = {recipe.data.max_samples}: every split was capped to at most that many rows"
        )
    return notes


def _timed(fn: Callable[[], SystemOutput]) -> tuple[SystemOutput, float]:
    start = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - start, 2)


def _metrics(
    ctx: EvalContext,
    gold: list,
    output: SystemOutput,
    seconds: float,
    method: str = "",
    keep_confusion: bool = True,
) -> dict[str, Any]:
    m = score(
        ctx.kind,
        gold,
        output.predictions,
        ctx.labels,
        ctx.task,
        fallback=ctx.fallback,
        train_counts=ctx.train_counts,
    )
    if not keep_confusion:
        m.pop("confusion_matrix", None)
    if output.constrained is not None:
        c = score(ctx.kind, gold, output.constrained, ctx.labels, ctx.task, train_counts=ctx.train_counts)
        c.pop("confusion_matrix", None)
        m["constrained"] = c
    elif ctx.mode == "generative" and ctx.kind in ("single", "relation"):
        m["constrained"] = None
    return {**m, "method": method, **output.info, "seconds": seconds}


def _adapter_note(recipe) -> str:
    a = recipe.adapter
    return f"{a.method} r={a.rank}" + (
        f", {recipe.quantization.method}" if is_quantized(recipe.quantization.method) else ""
    )


def _check_baseline_names(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise UsageError(
            f"unknown baseline(s) {', '.join(map(repr, unknown))}", hint=f"known: {', '.join(BASELINES)}"
        )


def _baseline(
    name: str, recipe, ctx: EvalContext, gold: list, model, prepared, trained, echo: Echo
) -> dict[str, Any]:
    echo(f"baseline: {name} ...")
    start = time.perf_counter()
    try:
        output, method = _run_baseline(name, recipe, ctx, model, prepared, trained)
    except BaselineSkipped as exc:
        echo(f"baseline {name} skipped: {exc}")
        return {"skipped": str(exc)}
    except LoraAdaptError:
        raise
    except Exception as exc:  # a failing baseline must not throw away a finished training run
        echo(f"warning: baseline {name} failed: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}
    return _metrics(ctx, gold, output, round(time.perf_counter() - start, 2), method, keep_confusion=False)


def _run_baseline(name: str, recipe, ctx: EvalContext, model, prepared, trained) -> tuple[SystemOutput, str]:
    # decoded once here: the baselines read their rows several times (features, labels, C on validation)
    train, validation = list(prepared.raw.get("train") or []), list(prepared.raw.get("validation") or [])
    method = system_method(name, ctx.kind, ctx.mode, ctx.pair)
    if name == "majority":
        if ctx.kind == "regression":
            return SystemOutput(R.mean_predictions(train, len(ctx.rows))), method
        return SystemOutput(B.majority(train, ctx.rows, ctx.kind, ctx.task)), method
    if name == "tfidf_logreg":
        chosen: dict[str, Any] = {}  # its C (alpha), recorded so the report's features reuse it
        if ctx.kind == "regression":
            predictions = R.tfidf_ridge(train, validation, ctx.rows, ctx.kind, chosen=chosen)
        else:
            predictions = B.tfidf_logreg(train, validation, ctx.rows, ctx.kind, ctx.task, chosen=chosen)
        return SystemOutput(predictions, info=chosen), method
    if name == "base_model":
        if ctx.mode == "generative":
            return run_model(model, ctx, base_only=True), method
        out = linear_probe(model, ctx, prepared.train, train, prepared.validation, validation)
        return out, method
    return _trained_baseline(name, ctx, trained or {})


def _trained_baseline(
    name: str, ctx: EvalContext, trained: Mapping[str, TrainedSystem]
) -> tuple[SystemOutput, str]:
    if name not in trained:
        raise LoraAdaptError(f"internal: baseline {name!r} needs a trained model and none was provided")
    other, info = trained[name]()
    try:
        output = run_model(other, ctx)
    finally:
        del other
    output.info.update(info)
    return output, f"all parameters, lr {info['learning_rate']:g}, same data and epochs/steps"


def _samples(ctx: EvalContext, gold: list, output: SystemOutput, count: int) -> list[dict[str, Any]]:
    """Up to ``count`` scored rows: wrong ones first (at most half), then right ones, in row order. For
    regression: the largest errors first (at most half), then the smallest; ``correct`` is None and
    ``error`` is the mean absolute error over the targets."""
    pred = output.predictions
    correct: list[bool | None]
    if ctx.kind == "regression":
        errors = [_abs_error(g, p, ctx.fallback) for g, p in zip(gold, pred, strict=True)]
        order = sorted(range(len(errors)), key=lambda i: -errors[i])
        worst = order[: (count + 1) // 2]
        best = [i for i in reversed(order) if i not in worst][: count - len(worst)]
        picked = sorted(worst + best)[:count]
        correct = [None] * len(gold)
    else:
        correct = [_same(ctx.kind, g, p) for g, p in zip(gold, pred, strict=True)]
        wrong = [i for i, ok in enumerate(correct) if not ok][: (count + 1) // 2]
        right = [i for i, ok in enumerate(correct) if ok][: count - len(wrong)]
        picked = sorted(wrong + right)[:count]
    samples = []
    for i in picked:
        row = ctx.rows[i]
        sample = {
            "input": _input_text(row),
            "gold": _show(ctx, row, gold[i]),
            "prediction": _show(ctx, row, pred[i]),
            "correct": correct[i],
        }
        if ctx.kind == "regression":
            sample["error"] = round(errors[i], 6)
        if output.answers is not None:
            sample["output"] = output.answers[i]
        samples.append(sample)
    return samples


def _input_text(row: dict[str, Any]) -> str:
    if "text_b" in row:
        return f"{row['text']} ||| {row['text_b']}"
    return row["text"] if "text" in row else " ".join(row.get("tokens", []))


def _abs_error(gold: list[float], pred: list[float] | None, fallback: list[float] | None) -> float:
    values = pred if pred is not None else (fallback or [0.0] * len(gold))
    return sum(abs(g - p) for g, p in zip(gold, values, strict=True)) / len(gold)


def _same(kind: str, gold: Any, pred: Any) -> bool:
    if pred is None:
        return False
    if kind == "entities":
        return sorted(gold) == sorted(pred)
    if kind == "extraction":
        return all(
            normalize_value(gold.get(k)) == normalize_value(pred.get(k)) for k in set(gold) | set(pred)
        )
    return list(gold) == list(pred) if isinstance(gold, list) else gold == pred


def _show(ctx: EvalContext, row: dict[str, Any], value: Any) -> Any:
    """A prediction or gold value as short readable text."""
    kind = ctx.kind
    if value is None:
        return "(invalid)"
    if kind == "regression":
        return R.format_values(value, list(ctx.labels or ()))
    if kind == "tagging":
        value = spans_from_tags(row["tokens"], value)
    if kind in ("tagging", "entities"):
        return "; ".join(f"{k}: {t}" for k, t in value) or "(no entities)"
    if kind == "multi":
        return " | ".join(value) or "(no labels)"
    if kind == "extraction":
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def _summary(out: dict[str, Any]) -> str:
    info = out["evaluation"]
    key = info["headline"]
    parts = [f"{info['split']} ({info['rows']} rows), {key}: adapted {_fmt(out['task'].get(key))}"]
    for name, result in out["baselines"].items():
        parts.append(
            f"{name} {_fmt(result.get(key)) if 'skipped' not in result and 'error' not in result else 'n/a'}"
        )
    invalid = out["task"].get("invalid")
    tail = f" ({invalid} invalid answers)" if info["mode"] == "generative" else ""
    return " | ".join(parts) + tail + verdict_suffix(out.get("health"))


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"
