"""The model card (README.md) of a run directory.

Front matter is built with huggingface_hub's ``ModelCardData`` / ``EvalResult`` so the Hub links the
card to its base model and reads the results; the body comes from ``lora_adapt/templates/model_card.md``
filled from manifest.json, metrics.json and recipe.resolved.yaml. Every optional key may be missing.
The card is checked by :func:`lora_adapt.hub.validation.validate_model_card` before any upload."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..recipe.derived import AUTO_CLASSES, is_quantized
from ..rundir import RunDir, read_run

TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "model_card.md"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
PATH_LIKE = re.compile(r"^(/|\./|\.\./|~|[A-Za-z]:[\\/]|package:)|\\")
FILE_SUFFIXES = (
    ".jsonl",
    ".json",
    ".csv",
    ".tsv",
    ".parquet",
    ".txt",
    ".conll",
    ".arrow",
    ".safetensors",
    ".bin",
)
METRIC_TYPES = (
    ("accuracy", "accuracy"),
    ("exact_match", "exact_match"),
    ("f1", "f1"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("perplexity", "perplexity"),
    ("loss", "loss"),
    ("pearson", "pearsonr"),
    ("spearman", "spearmanr"),
    ("rmse", "rmse"),
    ("mse", "mse"),
    ("mae", "mae"),
)


def render_model_card(
    run_dir: Path, *, repo_id: str | None = None, merged: bool = False, revision: str | None = None
) -> str:
    """README.md text for ``run_dir`` (the adapter, or its ``merged/`` model when ``merged``).

    ``repo_id`` / ``revision`` name where it is published (used in the loading snippet)."""
    from huggingface_hub import ModelCard

    run = read_run(run_dir, for_use=False)  # it describes a run kept for diagnosis too
    data = card_data(run, repo_id=repo_id, merged=merged)
    body = _body(run, repo_id=repo_id, merged=merged, revision=revision)
    card = ModelCard.from_template(data, template_path=str(TEMPLATE), **body)
    return re.sub(r"\n{3,}", "\n\n", str(card)).rstrip() + "\n"


def card_data(run: RunDir, *, repo_id: str | None = None, merged: bool = False):
    """The front matter as a ``huggingface_hub.ModelCardData``."""
    from huggingface_hub import ModelCardData

    hub_id = _get(run.manifest, "base_model", "hub_id")
    tag = pipeline_tag(run)
    results = eval_results(run, tag)
    license_ = _get(run.recipe_dict, "output", "license")
    return ModelCardData(
        base_model=hub_id or None,
        base_model_relation="adapter" if hub_id and not merged else None,
        library_name="transformers" if merged else "peft",
        pipeline_tag=tag,
        license=str(license_).lower() if license_ else None,
        datasets=_hub_datasets(run.manifest) or None,
        tags=_tags(run.manifest, merged),
        model_name=(repo_id or "").split("/")[-1] or run.manifest.get("name") or "adapter",
        eval_results=results or None,
    )


def pipeline_tag(run: RunDir) -> str:
    if run.head == "token_classification":
        return "token-classification"
    return "text-classification" if run.head == "sequence_classification" else "text-generation"


def eval_results(run: RunDir, task_type: str) -> list:
    """model-index entries: the task metrics on the test split, else the LM loss/perplexity after training."""
    from huggingface_hub import EvalResult

    split, scores = "test", scalar_metrics(run.metrics.get("task"))
    if not scores:
        split, scores = _loss_scores(run.metrics)
    name = run.manifest.get("name") or "run"
    return [
        EvalResult(
            task_type=task_type,
            dataset_type="custom",
            dataset_name=f"{name} ({split} split)",
            dataset_split=split,
            metric_type=_metric_type(key),
            metric_name=_pretty(key),
            metric_value=round(value, 4),
        )
        for key, value in scores.items()
    ]


def scalar_metrics(block: Any) -> dict[str, float]:
    """The float-valued entries of a metrics block (counts are ints and nested details are dicts: skipped)."""
    if not isinstance(block, dict):
        return {}
    return {k: float(v) for k, v in block.items() if isinstance(v, float) and v == v}


def _loss_scores(metrics: dict[str, Any]) -> tuple[str, dict[str, float]]:
    for split in ("test", "validation"):
        after = scalar_metrics(_get(metrics, split, "after"))
        scores: dict[str, float] = {k: after[k] for k in ("loss", "perplexity") if k in after}
        if scores:
            return split, scores
    return "test", {}


def _metric_type(key: str) -> str:
    return next((kind for needle, kind in METRIC_TYPES if needle in key), key)


def _pretty(key: str) -> str:
    text = key.replace("_", " ")
    return re.sub(r"\bf1\b", "F1", text[:1].upper() + text[1:], flags=re.IGNORECASE)


def _tags(manifest: dict[str, Any], merged: bool) -> list[str]:
    tags = ["lora"]
    if is_quantized(_get(manifest, "quantization", "method")):
        tags.append("qlora")
    if _get(manifest, "adapter", "method") == "dora":
        tags.append("dora")
    return [*tags, "transformers" if merged else "peft", "lora-adapt"]


def _hub_datasets(manifest: dict[str, Any]) -> list[str]:
    files = _get(manifest, "data", "files") or {}
    return [ref for ref in files if is_hub_id(ref)]


def is_hub_id(value: Any) -> bool:
    """A Hub id (``namespace/name``) and not a local path or file name."""
    return (
        isinstance(value, str)
        and bool(HUB_ID.match(value))
        and not PATH_LIKE.search(value)
        and not value.lower().endswith(FILE_SUFFIXES)
    )


def _get(d: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


# --- body ------------------------------------------------------------------------------------


def _body(run: RunDir, *, repo_id: str | None, merged: bool, revision: str | None) -> dict[str, Any]:
    m, base = run.manifest, run.manifest.get("base_model") or {}
    task = m.get("task") or {}
    hub_id = base.get("hub_id")
    columns, rows = _metric_table(run.metrics)
    return {
        "title": repo_id or m.get("name") or "lora-adapt adapter",
        "description": run.recipe_dict.get("description"),
        "merged": merged,
        "base_hub_id": hub_id,
        "base_display": hub_id or _local_name(base),
        "base_config_sha": base.get("config_sha256"),
        "task_type": task.get("type") or "sft",
        "task_mode": task.get("mode") or "auto",
        "recipe_rows": _recipe_rows(run),
        "data_rows": _data_rows(m),
        "cleaning": _cleaning(m),
        "data_files": [(Path(p).name, str(d)[:12]) for p, d in (_get(m, "data", "files") or {}).items()],
        "metric_columns": columns,
        "metric_rows": rows,
        "loss_rows": _loss_rows(run.metrics),
        "train_summary": _train_summary(run.metrics.get("train") or {}),
        "merge_rows": _merge_rows(run.merge_report),
        "merge_dtype": run.merge_report.get("dtype"),
        **_usage(run, repo_id, merged, revision),
        "limitations": _limitations(run, merged),
        "versions": {
            "lora_adapt": _get(m, "versions", "lora-adapt") or m.get("lora_adapt_version") or "?",
            "peft": _get(m, "versions", "peft") or "?",
            "transformers": _get(m, "versions", "transformers") or "?",
        },
    }


def _local_name(base: dict[str, Any]) -> str:
    """A local base model's name without the user's directory layout."""
    ref = str(base.get("name_or_path") or "a local model")
    return ref if ref.startswith("package:") else f"{Path(ref).name} (local)"


def _recipe_rows(run: RunDir) -> list[tuple[str, Any]]:
    m, r = run.manifest, run.recipe_dict
    a, t = m.get("adapter") or {}, r.get("training") or {}
    labels = _get(m, "task", "labels") or []
    targets = a.get("target_modules")
    rows = [
        (
            "task",
            f"{_get(m, 'task', 'type')} ({_get(m, 'task', 'mode')})"
            + (f", {len(labels)} {'targets' if _get(m, 'task', 'targets') else 'labels'}" if labels else "")
            + (" on sentence pairs" if _get(m, "task", "inputs") else ""),
        ),
        ("quantization", _get(m, "quantization", "method") or "none"),
        (
            "adapter",
            f"{a.get('method', 'lora')} r={a.get('rank')} alpha={a.get('alpha')} ({a.get('scaling', 'standard')})",
        ),
        ("target modules", ", ".join(targets) if isinstance(targets, list) else targets),
        ("modules saved in full", ", ".join(a.get("modules_to_save") or []) or None),
        ("trainable parameters", _share(a)),
        ("epochs / max steps", f"{t.get('epochs') or '-'} / {t.get('max_steps') or '-'}" if t else None),
        ("learning rate", t.get("learning_rate")),
        ("regularisation", _regularisation(r)),
        ("early stopping", _early_stopping(t, run.metrics.get("train") or {})),
        ("effective batch size", _get(m, "runtime", "effective_batch_size")),
        ("max sequence length", _get(r, "data", "max_seq_length")),
        ("precision", _get(m, "runtime", "precision")),
        ("seed", m.get("seed")),
    ]
    return [(k, v) for k, v in rows if v not in (None, "", "None")]


def _regularisation(recipe: dict[str, Any]) -> str | None:
    """Adapter dropout, weight decay, L1 penalty on the adapter weights and label smoothing."""
    a, t = recipe.get("adapter") or {}, recipe.get("training") or {}
    knobs = (
        ("adapter dropout", a.get("dropout")),
        ("weight decay", t.get("weight_decay")),
        ("L1 on adapter weights", t.get("l1_penalty")),
        ("label smoothing", t.get("label_smoothing")),
    )
    shown = [f"{name} {value:g}" for name, value in knobs if isinstance(value, (int, float))]
    return ", ".join(shown) or None


def _early_stopping(training: dict[str, Any], train: dict[str, Any]) -> str | None:
    stopping = training.get("early_stopping")
    if not stopping:
        return None
    kept = f"; saved adapter from step {train['best_step']}" if train.get("best_step") is not None else ""
    return f"on validation {stopping.get('metric')}, patience {stopping.get('patience')}{kept}"


def _share(adapter: dict[str, Any]) -> str | None:
    trainable, total, share = (
        adapter.get("trainable_params"),
        adapter.get("total_params"),
        adapter.get("trainable_share"),
    )
    if not trainable or not total:
        return None
    return f"{trainable:,} of {total:,}" + (f" ({100 * share:.3f}%)" if isinstance(share, float) else "")


def _data_rows(manifest: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    stats = _get(manifest, "data", "stats") or {}
    used = _get(manifest, "data", "rows") or stats.get("rows") or {}
    read = stats.get("rows_read") or {}
    return [
        (s, read.get(s, "-"), used.get(s, "-"))
        for s in ("train", "validation", "test")
        if s in used or s in read
    ]


def _cleaning(manifest: dict[str, Any]) -> str:
    stats = _get(manifest, "data", "stats") or {}
    parts = [
        f"{sum(v.values()) if isinstance(v, dict) else v} {rule.replace('_', ' ')} row(s) dropped"
        for rule, v in (stats.get("dropped") or {}).items()
        if (sum(v.values()) if isinstance(v, dict) else v)
    ]
    normalized = {k: v for k, v in (stats.get("normalized") or {}).items() if v}
    parts += [f"{v} row(s) with {k} normalized" for k, v in normalized.items()]
    return "; ".join(parts) if parts else ("no rows dropped" if "dropped" in stats else "")


def _metric_table(metrics: dict[str, Any]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    ours = scalar_metrics(metrics.get("task"))
    baselines = {name: scalar_metrics(block) for name, block in (metrics.get("baselines") or {}).items()}
    columns = list(ours) + sorted({k for b in baselines.values() for k in b} - set(ours))
    if not columns:
        return [], []
    rows = [("this adapter", ours)] + [(f"baseline: {n}", b) for n, b in baselines.items()]
    return columns, [(name, [_fmt(vals.get(c)) for c in columns]) for name, vals in rows]


def _loss_rows(metrics: dict[str, Any]) -> list[list[str]]:
    rows = []
    for split in ("validation", "test"):
        before, after = (
            scalar_metrics(_get(metrics, split, "before")),
            scalar_metrics(_get(metrics, split, "after")),
        )
        if before or after:
            rows.append(
                [
                    split,
                    _fmt(before.get("loss")),
                    _fmt(after.get("loss")),
                    _fmt(before.get("perplexity")),
                    _fmt(after.get("perplexity")),
                ]
            )
    return rows


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _merge_rows(report: dict[str, Any]) -> list[list[str]]:
    """merge_verification.json (written by `lora-adapt merge`) as table rows."""
    rows = []
    for key in ("merge", "saved", "adapter_effect", "qlora_gap"):
        part = report.get(key)
        if not isinstance(part, dict):
            continue
        what = str(part.get("what") or key)
        if not part.get("available", True) or not part.get("finite", True):
            rows.append([what, "-", "-", "-", str(part.get("reason") or "not measured")])
            continue
        agreement = part.get("greedy_agreement")
        rows.append(
            [
                what,
                f"{part.get('max_logit_diff', 0):.3g}",
                f"{part.get('mean_kl', 0):.3g}",
                f"{100 * agreement:.1f}%" if isinstance(agreement, (int, float)) else "-",
                str(part.get("positions", "-")),
            ]
        )
    return rows


def _train_summary(train: dict[str, Any]) -> str:
    parts = []
    steps = train.get("global_step", train.get("steps"))
    if steps is not None:
        parts.append(f"{steps} optimizer steps")
    if isinstance(train.get("final_loss"), (int, float)):
        parts.append(f"final training loss {train['final_loss']:.4f}")
    if train.get("stopped_early"):
        parts.append("stopped early")
    return ", ".join(parts)


def _usage(run: RunDir, repo_id: str | None, merged: bool, revision: str | None) -> dict[str, str]:
    base = run.manifest.get("base_model") or {}
    auto = AUTO_CLASSES[run.head]
    base_revision = base.get("revision")
    return {
        "auto_class": auto,
        "base_ref": base.get("hub_id") or "path/to/the/base/model",
        "load_kwargs": f', revision="{base_revision}"' if base_revision and base.get("hub_id") else "",
        "repo_ref": repo_id or ("path/to/merged" if merged else "path/to/adapter"),
        "revision_kwarg": f', revision="{revision}"' if repo_id and revision and revision != "main" else "",
        "hub_ref": f"hub:{repo_id}@{revision or 'main'}" if repo_id else "",
    }


def _limitations(run: RunDir, merged: bool) -> list[str]:
    m = run.manifest
    diverged = (run.metrics.get("train") or {}).get("divergence")
    items = (
        [
            "Training diverged: the training loss of the kept adapter is above the starting (or chance) loss; see "
            "report.md before using this adapter."
        ]
        if diverged
        else []
    )
    health = run.metrics.get("health") or {}
    items += [  # the run's own verdict (evaluation/health.py): a collapsed or below-baseline adapter says so
        f"Health check at training time: {warning} See report.md for the likely causes."
        for warning in health.get("warnings") or ()
    ]
    items += [
        "Scores come from a held-out split of the same data the adapter was trained on; they do not "
        "measure performance on other domains or distributions."
    ]
    train_rows = _get(m, "data", "rows", "train")
    if isinstance(train_rows, int) and train_rows < 1000:
        items.append(
            f"Trained on only {train_rows} rows: expect high variance and check outputs before relying on them."
        )
    if run.quantized and not merged:
        items.append(
            "Trained against a quantized base (QLoRA): load the base the same way for the closest results; "
            "merging goes through an unquantized base and changes outputs slightly."
        )
    if merged:
        items.append(
            "A merged model: the adapter weights were folded into the base and cannot be removed or swapped."
        )
    items.append("It inherits the biases and licence terms of its base model and of the training data.")
    return items
