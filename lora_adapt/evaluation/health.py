"""Is the adapted model any good? A collapse or a loss to a trivial baseline is never reported as success.

``assess`` returns the ``health`` block of metrics.json (stable keys)::

    health: {ok, collapsed, one_label, below_majority, below_tfidf, below_base, dominant_label,
             dominant_share, gold_share, majority_score, tfidf_score, base_score, headline,
             warnings: [str], likely_causes: [str]}

- ``one_label``: the adapted model gives its most frequent answer to (nearly) every scored unit
  (rows; tokens for tagging): the other labels get under a quarter of the share the gold labels give
  them (``OTHER_SHARE_FLOOR``). A model that found spam in 10% of SMS where gold has 13% passes; one
  that answers `ham` to 99% of them does not.
- ``below_majority``: the headline score is not above the majority-class baseline (regression: the
  training mean; computed here when the recipe did not ask for it).
- ``below_tfidf``: the headline score is below TF-IDF + logistic regression (when it ran).
- ``below_base``: the headline score is below the base model without an adapter (when it ran): a
  linear probe on the frozen encoder's features for a head, the untrained base's answers for a
  generative task. Training the adapter did worse than what the base already gives (BANKING77 at 1,000
  rows: LoRA 0.863 against the frozen probe's 0.877).
``collapsed`` = one_label or below_majority; ``ok`` = neither collapsed nor below TF-IDF or the base.
``likely_causes`` are drawn from the run: optimizer steps, label imbalance, rows per label, rates.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..recipe.derived import greater_is_better
from . import baselines as B
from . import regression as R
from .scoring import HEADLINE, score

REGRESSION_KEY = "mse"

OTHER_SHARE_FLOOR = 0.25
MIN_GOLD_OTHER_SHARE = 0.02  # below this, gold is itself one label: predicting it is no collapse
FEW_STEPS = 200
IMBALANCED_SHARE = 0.8
FEW_ROWS_PER_LABEL = 8


def assess(
    ctx, gold: list, predictions: list, task_metrics: dict, baselines: dict, recipe, prepared, steps
) -> dict:
    """The health block for the adapted model's ``predictions`` on ``ctx.rows`` (see the module doc)."""
    # regression compares errors: Pearson is undefined for the mean predictor and for a collapsed,
    # constant model alike, so it would flag neither
    key = REGRESSION_KEY if ctx.kind == "regression" else HEADLINE[ctx.kind]
    adapted = task_metrics.get(key)
    dominant = _dominance(ctx.kind, gold, predictions)
    majority = _baseline_score(baselines, "majority", key)
    train = (getattr(prepared, "raw", None) or {}).get("train") or []
    if majority is None and train and ctx.kind != "extraction":  # `eval --data` has no training rows
        trivial = (
            R.mean_predictions(train, len(ctx.rows))
            if ctx.kind == "regression"
            else B.majority(train, ctx.rows, ctx.kind, ctx.task)
        )
        counts = getattr(ctx, "train_counts", None)
        majority = score(ctx.kind, gold, trivial, ctx.labels, ctx.task, train_counts=counts)[key]
    tfidf = _baseline_score(baselines, "tfidf_logreg", key)
    base = _baseline_score(baselines, "base_model", key)
    below_majority = _worse(key, adapted, majority, ties=True)
    below_tfidf = _worse(key, adapted, tfidf, ties=False)
    below_base = _worse(key, adapted, base, ties=False)
    collapsed = bool(dominant["one_label"]) or bool(below_majority)
    health = {
        "ok": not collapsed and not below_tfidf and not below_base,
        "collapsed": collapsed,
        **dominant,
        "below_majority": below_majority,
        "below_tfidf": below_tfidf,
        "below_base": below_base,
        "headline": key,
        "majority_score": majority,
        "tfidf_score": tfidf,
        "base_score": base,
    }
    health["warnings"] = _warnings(health, adapted, ctx)
    health["likely_causes"] = _causes(recipe, prepared, ctx, steps) if health["warnings"] else []
    return health


def _worse(key: str, adapted: float | None, baseline: float | None, *, ties: bool) -> bool | None:
    """Whether ``adapted`` does not beat (``ties``) or is below ``baseline`` on ``key``."""
    if adapted is None or baseline is None:
        return None
    if greater_is_better(key):
        return adapted <= baseline if ties else adapted < baseline
    return adapted >= baseline if ties else adapted > baseline


def _baseline_score(baselines: dict, name: str, key: str) -> float | None:
    result = baselines.get(name) or {}
    return None if "skipped" in result or "error" in result else result.get(key)


def _units(kind: str, values: list) -> list:
    """Scored units: one label per row, one tag per token (tagging), `(no entity)` or each entity type."""
    if kind == "tagging":
        return [tag for row in values if row is not None for tag in row]
    if kind == "entities":
        return [t for row in values for t in ([k for k, _ in row] if row else ["(no entity)"])]
    if kind == "multi":
        return ["|".join(row) if row is not None else None for row in values]
    if kind == "regression":  # one "label" per distinct answer: a constant model answers one value
        return [None if row is None else repr(row) for row in values]
    if kind == "extraction":  # no labels to count
        return []
    return list(values)


def _dominance(kind: str, gold: list, predictions: list) -> dict[str, Any]:
    predicted, expected = _units(kind, predictions), _units(kind, gold)
    if not predicted or not expected:
        return {"one_label": False, "dominant_label": None, "dominant_share": None, "gold_share": None}
    label, count = Counter(predicted).most_common(1)[0]
    share = count / len(predicted)
    gold_share = expected.count(label) / len(expected)
    gold_other = 1 - gold_share
    one_label = gold_other >= MIN_GOLD_OTHER_SHARE and (1 - share) < OTHER_SHARE_FLOOR * gold_other
    return {
        "one_label": one_label,
        "dominant_label": "(invalid answer)" if label is None else label,
        "dominant_share": round(share, 4),
        "gold_share": round(gold_share, 4),
    }


def _warnings(health: dict, adapted: float | None, ctx) -> list[str]:
    out = []
    key = health["headline"]
    if health["one_label"]:
        out.append(
            f"COLLAPSED: the adapted model answers {health['dominant_label']!r} for "
            f"{100 * health['dominant_share']:.1f}% of the scored units (the gold labels: "
            f"{100 * health['gold_share']:.1f}%); it has not learned the task"
        )
    if health["below_majority"]:
        trivial = "training-mean predictor" if key == REGRESSION_KEY else "majority-class baseline"
        out.append(
            f"{'COLLAPSED' if not health['one_label'] else 'also'}: {key} {adapted:.4f} is not "
            f"{'above' if greater_is_better(key) else 'below'} the {trivial}'s ({health['majority_score']:.4f})"
        )
    if health["below_tfidf"]:
        out.append(
            f"BELOW BASELINE: {key} {adapted:.4f} is {'below' if greater_is_better(key) else 'above'} TF-IDF "
            f"+ {'ridge' if key == REGRESSION_KEY else 'logistic'} regression ({health['tfidf_score']:.4f}); "
            "a bag of words does better on this data"
        )
    if health["below_base"]:
        what = (
            "the base model without an adapter"
            if getattr(ctx, "mode", "head") == "generative"
            else "a linear probe on the frozen base model's features"
        )
        out.append(
            f"BELOW BASELINE: {key} {adapted:.4f} is {'below' if greater_is_better(key) else 'above'} {what} "
            f"({health['base_score']:.4f}); the adapter did not improve on what the base already gives"
        )
    return out


def _causes(recipe, prepared, ctx, steps: int | None) -> list[str]:
    t = recipe.training
    causes = []
    if steps is not None and steps < FEW_STEPS:
        causes.append(
            f"only {steps} optimizer steps: too few for a new head and a fresh adapter (raise "
            f"training.epochs or training.min_steps; 300 is the default for heads)"
        )
    counts = ((getattr(prepared, "stats", None) or {}).get("label_counts") or {}).get("train") or {}
    total = sum(counts.values())
    if counts and total:
        label, top = max(counts.items(), key=lambda kv: kv[1])
        weights = t.resolved_class_weights(
            tagging=ctx.kind == "tagging", multi_label=ctx.task.multi_label, majority_share=top / total
        )
        if top / total >= IMBALANCED_SHARE and weights != "balanced":
            causes.append(
                f"class imbalance: {label!r} is {100 * top / total:.0f}% of the training labels and "
                f"training.class_weights is '{weights}' (try 'balanced')"
            )
        rows = len((getattr(prepared, "raw", None) or {}).get("train") or [])
        if ctx.kind in ("single", "relation") and rows < FEW_ROWS_PER_LABEL * len(counts):
            causes.append(
                f"{rows} training rows for {len(counts)} labels ({rows / len(counts):.1f} per label): "
                "too few examples per label; label more rows"
            )
    causes.append(
        f"learning rates: training.learning_rate {t.learning_rate:g} "
        f"(the head at {t.resolved_head_lr_ratio(ctx.task.type):g}x): "
        "too low learns nothing in the steps given, too high diverges; compare the training loss in "
        "metrics.json with its first value"
    )
    return causes


def health_lines(health: dict | None) -> list[str]:
    """The warnings and likely causes as lines for the console (nothing when the run is healthy)."""
    if not health or not health.get("warnings"):
        return []
    lines = [f"WARNING: {w}" for w in health["warnings"]]
    lines.append("likely causes:")
    return lines + [f"  - {cause}" for cause in health["likely_causes"]]


def verdict_suffix(health: dict | None) -> str:
    if not health or health.get("ok", True):
        return ""
    if health["collapsed"]:
        return " | COLLAPSED (see the warnings)"
    below = [
        name
        for name, flag in (("TF-IDF + LR", "below_tfidf"), ("THE BASE MODEL", "below_base"))
        if health.get(flag)
    ]
    return f" | BELOW {' AND '.join(below)} (see the warnings)"
