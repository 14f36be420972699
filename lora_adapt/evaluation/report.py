"""``report.md``: a short markdown report a person can read, rendered from manifest.json and
metrics.json. The adapted model and every baseline share one table."""

from __future__ import annotations

from typing import Any

from .scoring import HEADLINE, TABLE_COLUMNS

PER_CLASS_MAX_ROWS = 40
DESCRIPTIONS = {
    "majority": "majority class",
    "tfidf_logreg": "TF-IDF + logistic regression",
    "base_model": "base model, no adapter",
    "full_finetune": "full fine-tuning",
}


def render_report(manifest: dict[str, Any], metrics: dict[str, Any]) -> str:
    parts = [
        f"# {manifest.get('name', 'run')}: {manifest.get('task', {}).get('type', 'sft')} run report",
        "",
        *_overview(manifest, metrics),
        "",
    ]
    if metrics.get("task"):
        parts += _task_sections(metrics)
    else:
        parts += _lm_section(metrics)
    return "\n".join(parts).rstrip() + "\n"


def _overview(manifest: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    task, base, adapter = (
        manifest.get("task", {}),
        manifest.get("base_model", {}),
        manifest.get("adapter", {}),
    )
    rows = manifest.get("data", {}).get("rows", {})
    train = metrics.get("train", {})
    labels = task.get("labels") or []
    share = adapter.get("trainable_share")
    lines = [
        f"- **Task:** {task.get('type')} ({task.get('mode')} mode)"
        + (f", {len(labels)} labels" if labels else ""),
        f"- **Base model:** {base.get('name_or_path')} ({base.get('model_type')})",
        f"- **Adapter:** {adapter.get('method')} r={adapter.get('rank')} alpha={adapter.get('alpha')}, targets "
        f"{adapter.get('target_modules')}; trainable {_int(adapter.get('trainable_params'))} of "
        f"{_int(adapter.get('total_params'))} parameters"
        + (f" ({100 * share:.2f}%)" if share is not None else ""),
        f"- **Quantization:** {manifest.get('quantization', {}).get('method', 'none')}",
        "- **Data rows:** " + ", ".join(f"{k} {v}" for k, v in rows.items()),
        f"- **Training:** {train.get('global_step')} steps, final train loss {_num(train.get('final_loss'))}, "
        f"{_num(train.get('runtime_s'), 1)} s" + (" (stopped early)" if train.get("stopped_early") else ""),
    ]
    return lines


def _task_sections(metrics: dict[str, Any]) -> list[str]:
    info = metrics.get("evaluation", {})
    kind = info.get("kind", "single")
    parts = [
        f"## Results on the {info.get('split', 'test')} split ({info.get('rows')} rows)",
        "",
        comparison_table(metrics),
        "",
        f"Headline metric: `{HEADLINE[kind]}`. {_kind_note(kind)}",
        "",
    ]
    parts += [f"- {note}" for note in info.get("notes", [])]
    parts += ["", *_per_class(metrics["task"], kind), *_samples(metrics.get("samples", []))]
    return parts


def comparison_table(metrics: dict[str, Any]) -> str:
    """The adapted model and each baseline, one row each, the task's metrics as columns."""
    info = metrics.get("evaluation", {})
    columns = list(TABLE_COLUMNS[info.get("kind", "single")])
    if info.get("mode") == "generative":
        columns.append("invalid")
    lines = ["| system | " + " | ".join(columns) + " | note |", "|" + "---|" * (len(columns) + 2)]
    for name, result, note in _systems(metrics):
        if "skipped" in result or "error" in result:
            note = result.get("skipped") or f"failed: {result.get('error')}"
            lines.append(f"| {name} | " + " | ".join(["–"] * len(columns)) + f" | {note} |")
            continue
        lines.append(f"| {name} | " + " | ".join(_cell(result.get(c)) for c in columns) + f" | {note} |")
    return "\n".join(lines)


def _systems(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    adapted = metrics["task"]
    out = [("**adapted (LoRA)**", adapted, adapted.get("method", ""))]
    if adapted.get("constrained"):
        out.append(("adapted, label-constrained", adapted["constrained"], "highest-likelihood label"))
    for name, result in metrics.get("baselines", {}).items():
        label = DESCRIPTIONS.get(name, name)
        out.append((label, result, result.get("method", "")))
        if result.get("constrained"):
            out.append((f"{label}, label-constrained", result["constrained"], "highest-likelihood label"))
    return out


def _kind_note(kind: str) -> str:
    return {
        "single": "Macro averages weight every class equally; invalid generative answers count as wrong.",
        "multi": "Subset accuracy needs the exact label set; F1 is computed per label.",
        "relation": "`f1_macro_official` is the SemEval-2010 Task 8 official score: macro-F1 over the relation "
        "types, direction must be right, the negative label left out; `f1_macro_directed` averages "
        "the directed labels instead.",
        "tagging": "Entity-level exact span matching (seqeval default mode = conlleval); `f1` is micro over entities.",
        "entities": "Generated entities are matched to gold as exact (type, text) pairs per sentence.",
        "extraction": "Exact match needs every field right; field-level scores compare normalised values.",
    }[kind]


def _per_class(task: dict[str, Any], kind: str) -> list[str]:
    per = task.get("per_class") or task.get("per_field") or {}
    if kind == "relation":
        per = task.get("per_relation_official") or per
    if not per:
        return []
    title = {"relation": "Per relation (official scoring)", "extraction": "Per field"}.get(kind, "Per class")
    lines = [
        f"## {title} (adapted model)",
        "",
        "| label | precision | recall | f1 | support |",
        "|---|---|---|---|---|",
    ]
    ranked = sorted(per.items(), key=lambda kv: -kv[1].get("support", 0))
    for label, row in ranked[:PER_CLASS_MAX_ROWS]:
        lines.append(
            f"| {label} | {_cell(row['precision'])} | {_cell(row['recall'])} | {_cell(row['f1'])} | {row['support']} |"
        )
    if len(per) > PER_CLASS_MAX_ROWS:
        lines.append(f"\n({len(per) - PER_CLASS_MAX_ROWS} more in metrics.json)")
    return [*lines, ""]


def _samples(samples: list[dict[str, Any]]) -> list[str]:
    if not samples:
        return []
    lines = ["## Samples", ""]
    for s in samples:
        mark = "correct" if s.get("correct") else "wrong"
        lines.append(
            f"- ({mark}) `{_short(s.get('input', ''))}` → gold: `{s.get('gold')}`, predicted: `{s.get('prediction')}`"
            + (f", generated: `{_short(s['output'], 80)}`" if s.get("output") is not None else "")
        )
    return [*lines, ""]


def _lm_section(metrics: dict[str, Any]) -> list[str]:
    rows = []
    for split in ("validation", "test"):
        m = metrics.get(split) or {}
        before, after = m.get("before") or {}, m.get("after") or {}
        if before or after:
            rows.append(
                f"| {split} | {_num(before.get('loss'))} | {_num(after.get('loss'))} | "
                f"{_num(before.get('perplexity'), 2)} | {_num(after.get('perplexity'), 2)} |"
            )
    if not rows:
        return ["No held-out loss was measured (no validation/test split, or evaluation.perplexity is off)."]
    return [
        "## Loss and perplexity (base model → adapted)",
        "",
        "| split | loss before | loss after | perplexity before | perplexity after |",
        "|---|---|---|---|---|",
        *rows,
    ]


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _num(value: Any, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _int(value: Any) -> str:
    return "?" if value is None else f"{value:,}"


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split()).replace("`", "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"
