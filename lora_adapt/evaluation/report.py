"""``report.md``: a short markdown report a person can read, rendered from manifest.json and
metrics.json. The adapted model and every baseline share one table."""

from __future__ import annotations

from typing import Any

from .scoring import HEADLINE, table_columns

PER_CLASS_MAX_ROWS = 40
DESCRIPTIONS = {
    "majority": "majority class",
    "tfidf_logreg": "TF-IDF + logistic regression",
    "base_model": "base model, no adapter",
    "full_finetune": "full fine-tuning",
}
REGRESSION_DESCRIPTIONS = {"majority": "training mean", "tfidf_logreg": "TF-IDF + ridge regression"}
"""Regression runs the same baselines under the names the recipe lists; these are what they are there."""


def system_name(name: str, kind: str) -> str:
    """How a baseline is called in the table (``majority`` is the training mean for regression)."""
    if kind == "regression" and name in REGRESSION_DESCRIPTIONS:
        return REGRESSION_DESCRIPTIONS[name]
    return DESCRIPTIONS.get(name, name)


def system_method(name: str, kind: str, mode: str, pair: bool = False) -> str:
    """The note beside a baseline: what exactly it fits."""
    learner = "ridge regression" if kind == "regression" else "logistic regression"
    if name == "majority":
        return "mean of each training target" if kind == "regression" else "most frequent training label"
    if name == "tfidf_logreg":
        if kind in ("tagging", "entities"):
            return "token-level LR on word features"
        grams = "word 1-2 + char 3-5 grams"
        return f"{grams} of both texts a, b: a, b, abs(a-b), a*b, cosine" if pair else grams
    if name == "base_model":
        if mode == "generative":
            return "zero-shot generation"
        features = (
            "both sentences' mean-pooled features u, v, abs(u-v), u*v" if pair else "mean-pooled features"
        )
        probe = "ridge probe" if kind == "regression" else "linear probe"
        return f"frozen encoder, {features} + {learner} ({probe})"
    return ""


def render_report(manifest: dict[str, Any], metrics: dict[str, Any]) -> str:
    parts = [
        f"# {manifest.get('name', 'run')}: {manifest.get('task', {}).get('type', 'sft')} run report",
        "",
        *_overview(manifest, metrics),
        "",
        *_divergence(metrics.get("train", {}).get("divergence")),
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
        + (f", {len(labels)} {'targets' if task.get('targets') else 'labels'}" if labels else "")
        + (" on sentence pairs" if task.get("inputs") else ""),
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
    if train.get("best_step") is not None:
        lines.append(
            f"- **Saved adapter:** the best validation checkpoint, step {train['best_step']} "
            f"(validation {train.get('watched_metric', 'metric')} {_num(train.get('best_metric'))})"
        )
    lines += _source_lines(manifest.get("data", {}).get("sources") or {})
    if train.get("overfitting"):
        lines += ["", f"> **Warning:** {train['overfitting']}. See `learning_curves.png`."]
    return lines


def _source_lines(sources: dict[str, Any]) -> list[str]:
    """Per-source counts of a mixed training set (data.sources)."""
    if not sources:
        return []
    lines = [
        "",
        "| source | rows read | duplicates of earlier sources | drawn into the mix | train | validation | test |",
    ]
    lines.append("|---|---|---|---|---|---|---|")
    for name, s in sources.items():
        final = s.get("final") or {}
        lines.append(
            f"| {name} | {s.get('rows_read')} | {s.get('duplicates_of_earlier')} | {s.get('drawn')} | "
            f"{final.get('train', 0)} | {final.get('validation', 0)} | {final.get('test', 0)} |"
        )
    return lines


def _divergence(rise: dict[str, Any] | None) -> list[str]:
    """The training loss check, when it failed (kept apart from any evaluation warning)."""
    if not rise:
        return []
    from ..rundir import judged_loss

    start, final, peak = rise["start"], rise["final"], rise["peak"]
    chance = rise.get("chance_loss")
    lines = [
        "## Warning: training diverged (training loss check)",
        "",
        f"{_sentence(judged_loss(rise))} {_num(final['loss'])} (logged at step {final['step']}) is above the "
        f"{' and the '.join(rise['above'])} by more than {100 * rise['margin']:.0f}%: starting loss "
        f"{_num(start['loss'])} (step {start['step']})"
        + (f", chance loss ln K = {_num(chance)}" if chance is not None else "")
        + f". It first rose above at step {rise['rose_at_step']} and peaked at {_num(peak['loss'])} "
        f"(step {peak['step']}). Treat every result below as that of a failed run"
        + (" (kept: training.divergence.allow is true)." if rise.get("allowed") else "."),
        "",
        "Likely causes:",
        "",
        *[f"- {cause}" for cause in rise.get("likely_causes", [])],
        "",
    ]
    return lines


def _task_sections(metrics: dict[str, Any]) -> list[str]:
    info = metrics.get("evaluation", {})
    kind = info.get("kind", "single")
    parts = [
        *_health(metrics.get("health")),
        f"## Results on the {info.get('split', 'test')} split ({info.get('rows')} rows)",
        "",
        comparison_table(metrics),
        "",
        f"Headline metric: `{HEADLINE[kind]}`{_headline_meaning(kind, metrics['task'])}. {_kind_note(kind)}",
        "",
    ]
    parts += [f"- {note}" for note in info.get("notes", [])]
    parts += ["", *_per_class(metrics["task"], kind), *_samples(metrics.get("samples", []))]
    return parts + explanation_section(metrics.get("explanations"))


def _health(health: dict[str, Any] | None) -> list[str]:
    """A warning section above the results when the adapted model collapsed or lost to TF-IDF."""
    if not health or not health.get("warnings"):
        return []
    title = "collapsed" if health.get("collapsed") else "scores below a simple baseline"
    return [
        f"## Warning: the adapted model {title}",
        "",
        *[f"- **{w}**" for w in health["warnings"]],
        "",
        "Likely causes:",
        "",
        *[f"- {cause}" for cause in health.get("likely_causes", [])],
        "",
    ]


def comparison_table(metrics: dict[str, Any]) -> str:
    """The adapted model and each baseline, one row each, the task's metrics as columns."""
    info = metrics.get("evaluation", {})
    kind = info.get("kind", "single")
    columns = table_columns(kind, metrics.get("task"))
    if info.get("mode") == "generative":
        columns.append("invalid")
    lines = ["| system | " + " | ".join(columns) + " | note |", "|" + "---|" * (len(columns) + 2)]
    for name, result, note in _systems(metrics):
        if "skipped" in result or "error" in result:
            note = result.get("skipped") or f"failed: {result.get('error')}"
            lines.append(f"| {name} | " + " | ".join(["–"] * len(columns)) + f" | {table_text(note)} |")
            continue
        cells = " | ".join(_cell(result.get(c)) for c in columns)
        lines.append(f"| {name} | {cells} | {table_text(note)} |")
    return "\n".join(lines)


def _systems(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    adapted = metrics["task"]
    out = [("**adapted (LoRA)**", adapted, adapted.get("method", ""))]
    if adapted.get("constrained"):
        out.append(("adapted, label-constrained", adapted["constrained"], "highest-likelihood label"))
    kind = metrics.get("evaluation", {}).get("kind", "single")
    for name, result in metrics.get("baselines", {}).items():
        label = system_name(name, kind)
        out.append((label, result, result.get("method", "") + _regularisation(result)))
        if result.get("constrained"):
            out.append((f"{label}, label-constrained", result["constrained"], "highest-likelihood label"))
    return out


def _regularisation(result: dict[str, Any]) -> str:
    """A fitted baseline's C (alpha) and where it came from, for the note beside it."""
    for key in ("C", "alpha"):
        if result.get(key) is not None:
            where = result.get(f"{key}_chosen_on")
            return f"; {key}={result[key]:g}" + (" (chosen on validation)" if where == "validation" else "")
    return ""


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
        "regression": "Pearson and Spearman correlations, MSE, RMSE and MAE in the targets' own units, "
        "averaged over the targets (`pearson_X` / `mse_X`: target X). Unparseable generated answers are "
        "scored as the training mean and counted as invalid.",
    }[kind]


def _headline_meaning(kind: str, task: dict[str, Any]) -> str:
    """What the headline is in this run when its name would mislead (a binary relation task)."""
    positive = task.get("positive_label")
    if kind == "relation" and positive is not None and task.get("negative_label") is not None:
        return (
            f" (here: the F1 of the positive class `{positive}` alone, since `{task['negative_label']}` is left "
            "out - not a macro average; `f1_macro` averages both classes)"
        )
    return ""


def explanation_section(explanations: dict[str, Any] | None) -> list[str]:
    """The words that drive the adapted model's decisions, beside the TF-IDF baseline's top features."""
    if explanations and explanations.get("error"):  # explanations are never fatal; their failure is said
        return [
            "## What drives the adapted model's decisions",
            "",
            f"Not computed: the attribution failed ({table_text(_short(str(explanations['error']), 400))}). "
            "The scores above stand; rerun it alone with `lora-adapt explain RUN_DIR --text ...`.",
            "",
        ]
    if not explanations or not explanations.get("groups"):
        return []
    lines = [
        "## What drives the adapted model's decisions",
        "",
        f"{explanations.get('method', '')} Over {explanations.get('rows')} test rows; words are ranked by "
        "their summed attribution toward the group. TF-IDF features are the baseline's largest weights "
        "for the same group. A domain model should rank domain words; punctuation or boilerplate at the "
        "top points to a shortcut.",
        "",
        *_unconverged_note(explanations),
        "| group | adapted model: most influential words | TF-IDF baseline: top features |",
        "|---|---|---|",
    ]
    for group in explanations["groups"]:
        words = ", ".join(f"{w} ({v:+.3g})" for w, v in group.get("words", [])) or "–"
        tfidf = ", ".join(f"{w} ({v:+.3g})" for w, v in group.get("tfidf", [])) or "–"
        lines.append(
            f"| {group['name']} | {table_text(_short(words, 400))} | {table_text(_short(tfidf, 400))} |"
        )
    return [*lines, ""]


def _unconverged_note(explanations: dict[str, Any]) -> list[str]:
    """Explanations whose attributions did not sum to the output gap are left out of the ranking: say so."""
    missing, total = explanations.get("unconverged") or 0, explanations.get("explanations") or 0
    if not missing:
        return []
    steps = (explanations.get("steps_used") or [0, 0])[-1]
    return [
        f"**{missing} of {total} explanations did not converge** within {steps} Integrated Gradients steps "
        "(their attributions summed to too small a part of the output gap: the model's output jumps along "
        "the path) and are left out of the ranking"
        + (", so it is empty" if missing == total else "")
        + ". Raise `evaluation.explanations.max_steps`, or explain single texts with `lora-adapt explain "
        "RUN_DIR --text ... --max-steps N`.",
        "",
    ]


def _per_class(task: dict[str, Any], kind: str) -> list[str]:
    per = task.get("per_class") or task.get("per_field") or task.get("per_target") or {}
    if kind == "relation":
        per = task.get("per_relation_official") or per
    if not per:
        return []
    if kind == "regression":
        return _per_target(per)
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


def _per_target(per: dict[str, Any]) -> list[str]:
    lines = [
        "## Per target (adapted model)",
        "",
        "| target | pearson | spearman | mse | rmse | mae |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in per.items():
        lines.append(
            f"| {name} | "
            + " | ".join(_cell(row.get(m)) for m in ("pearson", "spearman", "mse", "rmse", "mae"))
            + " |"
        )
    return [*lines, ""]


def _samples(samples: list[dict[str, Any]]) -> list[str]:
    if not samples:
        return []
    lines = ["## Samples", ""]
    for s in samples:
        mark = "correct" if s.get("correct") else "wrong"
        if s.get("correct") is None and "error" in s:
            mark = f"abs. error {s['error']:.3f}"
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


def table_text(text: Any) -> str:
    """Free text in a markdown table cell: a literal `|` would start a new column."""
    return str(text).replace("|", "\\|")


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


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
