"""Explanations of an adapted head model's decisions: Integrated Gradients (Captum) over its input words.

Public API::

    explain_source(source, inputs, *, target=None, steps=50, max_steps=512, tolerance=0.05, out_dir, echo)
        -> list[Explanation]
        # `lora-adapt explain`: load a run / adapter folder / hub:ORG/NAME with modeling.load_adapted,
        # explain each (text, text_b) input, write explanation.html, one PNG per explanation and
        # attributions.json into out_dir (staged: nothing half-written is left behind)
    report_explanations(recipe, model, tokenizer, prepared, echo=print) -> dict | None
        # a finished run's report: influential words per class over a sample of the test split
        # beside the TF-IDF baseline's top features (metrics.json "explanations")
    Attributor(model, tokenizer, head, steps=..., max_steps=..., tolerance=..., max_length=...)
        .explain(text, text_b, target) -> Explanation  # .converged: the delta is within the tolerance

Heads of sequence classification (single-label classes, relations) and regression are explained;
token classification and generative models are not (a usage error says so).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from .. import artifacts as A
from ..errors import LoraAdaptError, UsageError
from ..recipe.derived import REGRESSION_TASKS
from .attribution import Attributor, Explanation, Head, Word
from .render import render_html, save_png
from .summary import influential_words

HTML_FILE = "explanation.html"
JSON_FILE = "attributions.json"

__all__ = [
    "Attributor",
    "Explanation",
    "Head",
    "Word",
    "explain_source",
    "head_for",
    "report_explanations",
]


def head_for(
    task_type: str, head: str, labels: Sequence[str] | None, *, multi_label: bool, scaling=None
) -> Head:
    """The :class:`Head` of a trained model; a usage error for what cannot be explained."""
    if head != "sequence_classification":
        what = "a token-classification head" if head == "token_classification" else "a generative model"
        raise UsageError(
            f"explain attributes a sequence classifier's or regressor's output; this adapter trains {what}",
            hint="explain runs of classification, relation_classification or regression in head mode",
        )
    if multi_label:
        raise UsageError(
            "explain does not support multi-label heads yet (each label is its own yes/no decision)",
            hint="explain single-label classification, relations or regression",
        )
    kind = "regression" if task_type in REGRESSION_TASKS else "classification"
    return Head(kind, tuple(labels or ()), scaling if kind == "regression" else None)


def explain_source(
    source: str | Path,
    inputs: Sequence[tuple[str, str | None]],
    *,
    out_dir: Path,
    target: str | None = None,
    steps: int = 50,
    max_steps: int = 512,
    tolerance: float = 0.05,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
) -> list[Explanation]:
    """Explain ``inputs`` with the adapter at ``source``; write the HTML page, PNGs and JSON to ``out_dir``
    (an existing folder only with ``overwrite``; never the adapter's own folder or run)."""
    from ..modeling import load_adapted
    from ..modeling.adapted import resolve_adapter

    info = resolve_adapter(str(source))
    keep = [info.folder, *([info.run.path] if info.run else [])]
    A.check_output(out_dir, overwrite=overwrite, keep=keep)  # before the model loads
    head = head_for(
        info.task_type, info.head, info.labels, multi_label=info.multi_label, scaling=info.target_scaling
    )
    pair_trained = info.task.get("inputs") is not None
    if any((b is not None) != pair_trained for _, b in inputs):
        raise UsageError(
            "this adapter was trained on sentence pairs: give --text-b too"
            if pair_trained
            else "this adapter was trained on single texts: drop --text-b",
        )
    adapted = load_adapted(info)
    echo(
        f"loaded {adapted.loaded.source.load_path} + adapter {info.name} ({head.kind}, {len(head.names)} outputs)"
    )
    attributor = Attributor(
        adapted.model, adapted.tokenizer, head, steps=steps, max_steps=max_steps, tolerance=tolerance
    )
    index = _target_index(head, target)
    explanations = []
    for text, text_b in inputs:
        targets = [index] if index is not None or head.kind == "classification" else range(len(head.names))
        explanations += [attributor.explain(text, text_b, target=t) for t in targets]
    _write(
        explanations, out_dir, title=f"Explanations: {info.name}", overwrite=overwrite, keep=keep, echo=echo
    )
    return explanations


def _target_index(head: Head, target: str | None) -> int | None:
    if target is None:
        return None
    if target not in head.names:
        raise UsageError(
            f"--target {target!r} is not one of this head's outputs",
            hint=f"choose one of {', '.join(head.names)}",
        )
    return head.names.index(target)


def _write(
    explanations: Sequence[Explanation],
    out_dir: Path,
    *,
    title: str,
    overwrite: bool,
    keep: Sequence[Path],
    echo: Callable[[str], None],
) -> None:
    with A.staged_output(Path(out_dir), overwrite=overwrite, keep=keep, echo=echo) as stage:
        A.atomic_write_text(stage / HTML_FILE, render_html(explanations, title))
        for number, explanation in enumerate(explanations, 1):
            save_png(explanation, stage / png_name(number))
        A.atomic_write_json(stage / JSON_FILE, [e.to_json() for e in explanations])


def png_name(number: int) -> str:
    return f"explanation-{number:03d}.png"


def report_explanations(
    recipe, model, tokenizer, prepared, *, tfidf: dict | None = None, echo: Callable[[str], None] = print
) -> dict | None:
    """For a run's report: influential words per class (per target and direction for regression) over
    ``evaluation.explanations.rows`` sampled test rows, beside the TF-IDF baseline's top features. None when
    the run has nothing to explain (a generative or tagging model, no test rows, ``rows: 0``). ``tfidf``: the
    scored TF-IDF baseline's metrics (its recorded C or alpha is reused, not chosen again). A failure is
    recorded as ``{"error": ...}``, never fatal (the trained adapter must not be lost to it)."""
    from ..recipe.derived import explanation_settings, head_kind

    spec = explanation_settings(recipe.evaluation)
    rows = prepared.raw.get("test") or []
    head_name = head_kind(recipe.task)
    if not (spec.rows and rows and head_name == "sequence_classification" and not recipe.task.multi_label):
        return None
    echo(f"explaining the adapted model on {min(spec.rows, len(rows))} test rows (Integrated Gradients) ...")
    scaling = (prepared.stats.get("targets") or {}).get("scaling")
    head = head_for(recipe.task.type, head_name, prepared.labels, multi_label=False, scaling=scaling)
    kind = "relation" if recipe.task.type == "relation_classification" else head.kind
    try:
        attributor = Attributor(
            model,
            tokenizer,
            head,
            steps=spec.steps,
            max_steps=spec.max_steps,
            tolerance=spec.tolerance,
            max_length=recipe.data.max_seq_length,
        )
        return influential_words(
            attributor,
            rows,
            list(prepared.raw.get("train") or []),  # decoded once: the TF-IDF side reads them three times
            validation=list(prepared.raw.get("validation") or []),
            kind=kind,
            top=spec.top_words,
            sample=spec.rows,
            seed=recipe.training.seed,
            tfidf=tfidf,
        )
    except LoraAdaptError:
        raise
    except Exception as exc:  # a failing explanation must not throw away a finished training run
        echo(f"warning: explanations failed: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}
