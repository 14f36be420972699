"""Task metrics as pure functions of gold and predicted labels. No model code, no torch.

Conventions shared by every function here:
- A prediction of ``None`` is an *invalid* output (a generative answer that could not be parsed).
  It is never dropped: it counts in ``n`` and in ``invalid``, it is wrong for accuracy / exact match,
  and it is a miss for recall (it predicts no class, so it adds no false positive to any class).
- Scores are floats in [0, 1], rounded to 6 places; counts are ints.
- Precision / recall / F1 are 0 when undefined (no prediction / no gold item), as sklearn's
  ``zero_division=0``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

Metrics = dict[str, Any]
INVALID_COLUMN = "(invalid)"
DIRECTION = re.compile(r"\((e[12]),(e[12])\)$")


def _r(x: float) -> float:
    return round(float(x), 6)


def prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    """Precision, recall and F1 from counts (0 when undefined)."""
    p = correct / predicted if predicted else 0.0
    r = correct / gold if gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": _r(p), "recall": _r(r), "f1": _r(f)}


# --- single-label and multi-label classification (scikit-learn) ---------------------------------


def classification_metrics(gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]) -> Metrics:
    """Accuracy; P/R/F1 macro, micro, weighted and per class; confusion matrix (rows gold, columns predicted)."""
    n = len(gold)
    y_pred = [p if p is not None and p in labels else INVALID_COLUMN for p in pred]
    correct = sum(g == p for g, p in zip(gold, pred, strict=True))
    out: Metrics = {
        "n": n,
        "invalid": sum(p is None for p in pred),
        "accuracy": _r(correct / n) if n else 0.0,
    }
    averages, per_class = _sklearn_scores(list(gold), y_pred, labels)
    out.update(averages)
    out["per_class"] = per_class
    out["confusion_matrix"] = confusion_matrix(gold, pred, labels)
    return out


def _sklearn_scores(
    y_true: Any, y_pred: Any, labels: Sequence[str]
) -> tuple[dict[str, float], dict[str, dict]]:
    """scikit-learn's P/R/F1 (macro, micro, weighted, per class) over ``labels``; an invalid prediction is a
    class outside ``labels`` (or an empty label set), so it adds no false positive and is a miss for recall."""
    import warnings

    from sklearn.metrics import multilabel_confusion_matrix, precision_recall_fscore_support

    names = ("precision", "recall", "f1")
    if not labels:
        return {f"{m}_{avg}": 0.0 for m in names for avg in ("macro", "micro", "weighted")}, {}
    index = list(range(len(labels))) if not isinstance(y_true, list) else list(labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, support = precision_recall_fscore_support(
            y_true, y_pred, labels=index, average=None, zero_division=0
        )
        tables = multilabel_confusion_matrix(y_true, y_pred, labels=index)
        # a label neither in gold nor predicted here (one only another split carries) is no class of this
        # split: averaging its 0/0 would take 1/K off every system's macro score (sklearn's own default)
        present = _present(y_true, y_pred, index) or index
        averages = {
            f"{name}_{avg}": _r(value)
            for avg in ("macro", "micro", "weighted")
            for name, value in zip(
                names,
                precision_recall_fscore_support(y_true, y_pred, labels=present, average=avg, zero_division=0)[
                    :3
                ],
                strict=True,
            )
        }
    per_class = {  # every label, present or not
        label: {
            "precision": _r(p[k]),
            "recall": _r(r[k]),
            "f1": _r(f[k]),
            "support": int(support[k]),
            "predicted": int(tables[k][1][1] + tables[k][0][1]),
            "correct": int(tables[k][1][1]),
        }
        for k, label in enumerate(labels)
    }
    return averages, per_class


def confusion_matrix(gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str]) -> Metrics:
    """Counts with rows = gold label, columns = predicted label (+ an ``(invalid)`` column when any)."""
    from sklearn.metrics import confusion_matrix as counts

    columns = list(labels)
    if any(p is None or p not in labels for p in pred):
        columns.append(INVALID_COLUMN)
    y_pred = [p if p is not None and p in labels else INVALID_COLUMN for p in pred]
    matrix = counts(list(gold), y_pred, labels=[*labels, INVALID_COLUMN]) if labels else []
    rows = [[int(v) for v in row[: len(columns)]] for row in matrix[: len(labels)]]
    return {"labels": list(labels), "columns": columns, "matrix": rows}


def multilabel_metrics(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str] | None], labels: Sequence[str]
) -> Metrics:
    """Subset accuracy, P/R/F1 micro / macro / weighted / samples, per class. Invalid = empty set, never correct."""
    from sklearn.preprocessing import MultiLabelBinarizer

    n = len(gold)
    sets = [(set(g), set(p) if p is not None else None) for g, p in zip(gold, pred, strict=True)]
    binarizer = MultiLabelBinarizer(classes=list(labels))
    known = set(labels)
    y_true = binarizer.fit_transform([g & known for g, _ in sets])
    y_pred = binarizer.transform([(p or set()) & known for _, p in sets])
    out: Metrics = {
        "n": n,
        "invalid": sum(p is None for _, p in sets),
        "subset_accuracy": _r(sum(p is not None and g == p for g, p in sets) / n) if n else 0.0,
    }
    averages, per_class = _sklearn_scores(y_true, y_pred, labels)
    out.update(averages)
    out["f1_samples"] = _r(sum(_sample_f1(g, p) for g, p in sets) / n) if n else 0.0
    out["per_class"] = per_class
    return out


def _sample_f1(gold: set[str], pred: set[str] | None) -> float:
    if pred is None:
        return 0.0
    if not gold and not pred:
        return 1.0
    return 2 * len(gold & pred) / (len(gold) + len(pred))


# --- relation classification (SemEval-2010 Task 8 scorer semantics) --------------------------


def relation_metrics(
    gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str], negative_label: str | None
) -> Metrics:
    """Classification metrics on the directed labels, plus the SemEval-2010 Task 8 scores.

    ``f1_macro_official``: the official "(9+1)-way, directionality taken into account" macro-F1
    (scorer v1.2): per undirected relation R, correct = exact (relation and direction) matches,
    P = correct / (predictions of type R, any direction), R = correct / gold of type R; averaged
    over the relation types present in the gold labels, excluding ``negative_label``.
    ``f1_macro_directed``: the "(2*9+1)-way" variant: the same over the directed labels (18).
    Both leave the negative label out of the average (its predictions simply count for nothing).
    Without direction suffixes both equal macro-F1 over the gold labels other than the negative one.
    """
    out = classification_metrics(gold, pred, labels)
    official = _relation_scores(gold, pred, negative_label, relation_type=strip_direction)
    directed = _relation_scores(gold, pred, negative_label, relation_type=str)
    out.update({f"{k}_official": v for k, v in official["avg"].items()})
    out.update({f"{k}_directed": v for k, v in directed["avg"].items()})
    out["per_relation_official"] = official["per"]
    out["negative_label"] = negative_label
    return out


def strip_direction(label: str) -> str:
    """``Cause-Effect(e2,e1)`` -> ``Cause-Effect``; labels without a direction suffix are unchanged."""
    return DIRECTION.sub("", label)


def _relation_scores(
    gold: Sequence[str],
    pred: Sequence[str | None],
    negative: str | None,
    *,
    relation_type: Callable[[str], str],
) -> dict[str, Any]:
    key = relation_type
    types = sorted({key(g) for g in gold} - {negative})
    per: dict[str, dict] = {}
    for t in types:
        correct = sum(g == p for g, p in zip(gold, pred, strict=True) if key(g) == t)
        predicted = sum(p is not None and key(p) == t for p in pred)
        per[t] = {
            **prf(correct, predicted, sum(key(g) == t for g in gold)),
            "correct": correct,
            "predicted": predicted,
            "support": sum(key(g) == t for g in gold),
        }
    avg = {
        m: _r(sum(r[m] for r in per.values()) / len(per)) if per else 0.0
        for m in ("precision", "recall", "f1")
    }
    micro = prf(
        sum(r["correct"] for r in per.values()),
        sum(r["predicted"] for r in per.values()),
        sum(r["support"] for r in per.values()),
    )
    return {
        "avg": {
            "precision_macro": avg["precision"],
            "recall_macro": avg["recall"],
            "f1_macro": avg["f1"],
            "f1_micro": micro["f1"],
        },
        "per": per,
    }


# --- entities -----------------------------------------------------------------------------


def entity_metrics(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> Metrics:
    """Entity-level P/R/F1 with exact span matching, from BIO / IOB2 tag sequences.

    Spans are decoded with seqeval's default mode, which follows conlleval (a stray ``I-X`` after
    ``O`` or after another type starts a new entity); a predicted entity is correct only when its
    type, start and end all equal a gold entity's. ``f1`` is the micro average over entities (what
    conlleval reports as "FB1" overall); ``f1_macro`` averages the entity types.
    """
    from seqeval.metrics.sequence_labeling import get_entities

    gold_spans = [set(get_entities(list(g))) for g in gold]
    pred_spans = [set(get_entities(list(p))) for p in pred]
    counts = _span_counts(gold_spans, pred_spans)
    tokens = sum(len(g) for g in gold)
    token_hits = sum(a == b for g, p in zip(gold, pred, strict=True) for a, b in zip(g, p, strict=True))
    return _entity_summary(counts, len(gold), 0, token_accuracy=_r(token_hits / tokens) if tokens else 0.0)


def entity_set_metrics(
    gold: Sequence[Sequence[tuple[str, str]]], pred: Sequence[Sequence[tuple[str, str]] | None]
) -> Metrics:
    """Entity-level P/R/F1 for generated answers: (type, text) pairs matched exactly, as multisets per example.

    Used for generative NER, where the model lists entities rather than tagging positions; an
    invalid answer predicts nothing (all its gold entities are misses)."""
    gold_c = [Counter(g) for g in gold]
    pred_c = [Counter(p or ()) for p in pred]
    counts = _span_counts(gold_c, pred_c)
    return _entity_summary(counts, len(gold), sum(p is None for p in pred), token_accuracy=None)


def _span_counts(gold: Sequence, pred: Sequence) -> dict[str, Counter]:
    """Per entity type: gold, predicted and correct counts (sets or multisets of (type, ...) tuples)."""
    counts: dict[str, Counter] = {"gold": Counter(), "pred": Counter(), "correct": Counter()}
    for g, p in zip(gold, pred, strict=True):
        g, p = Counter(g), Counter(p)
        for item, k in g.items():
            counts["gold"][item[0]] += k
        for item, k in p.items():
            counts["pred"][item[0]] += k
        for item, k in (g & p).items():
            counts["correct"][item[0]] += k
    return counts


def _entity_summary(
    counts: dict[str, Counter], n: int, invalid: int, token_accuracy: float | None
) -> Metrics:
    types = sorted(set(counts["gold"]) | set(counts["pred"]))
    per = {
        t: {
            **prf(counts["correct"][t], counts["pred"][t], counts["gold"][t]),
            "support": counts["gold"][t],
            "predicted": counts["pred"][t],
            "correct": counts["correct"][t],
        }
        for t in types
    }
    overall = prf(sum(counts["correct"].values()), sum(counts["pred"].values()), sum(counts["gold"].values()))
    gold_types = [t for t in types if counts["gold"][t]]
    macro = _r(sum(per[t]["f1"] for t in gold_types) / len(gold_types)) if gold_types else 0.0
    out: Metrics = {
        "n": n,
        "invalid": invalid,
        **overall,
        "f1_macro": macro,
        "entities_gold": sum(counts["gold"].values()),
        "entities_predicted": sum(counts["pred"].values()),
    }
    if token_accuracy is not None:
        out["token_accuracy"] = token_accuracy
    out["per_class"] = per
    return out


# --- structured extraction -------------------------------------------------------------------


def extraction_metrics(
    gold: Sequence[dict[str, Any]], pred: Sequence[dict[str, Any] | None], fields: Sequence[str] | None = None
) -> Metrics:
    """Exact match of the whole object and field-level P/R/F1 (values compared after normalisation).

    A field counts as predicted when its value is non-empty, as gold when the gold value is
    non-empty, and as correct when both are non-empty and equal. ``fields`` limits scoring to those
    keys (default: every key seen in gold)."""
    keys = list(fields) if fields else sorted({k for g in gold for k in g})
    per: dict[str, dict] = {}
    for key in keys:
        g_vals = [normalize_value(g.get(key)) for g in gold]
        p_vals = [normalize_value(p.get(key)) if p is not None else None for p in pred]
        correct = sum(g is not None and g == p for g, p in zip(g_vals, p_vals, strict=True))
        per[key] = {
            **prf(correct, sum(p is not None for p in p_vals), sum(g is not None for g in g_vals)),
            "support": sum(g is not None for g in g_vals),
            "predicted": sum(p is not None for p in p_vals),
            "correct": correct,
        }
    exact = sum(
        p is not None and all(normalize_value(g.get(k)) == normalize_value(p.get(k)) for k in keys)
        for g, p in zip(gold, pred, strict=True)
    )
    pooled = prf(
        sum(r["correct"] for r in per.values()),
        sum(r["predicted"] for r in per.values()),
        sum(r["support"] for r in per.values()),
    )
    n = len(gold)
    return {
        "n": n,
        "invalid": sum(p is None for p in pred),
        "exact_match": _r(exact / n) if n else 0.0,
        "field_precision": pooled["precision"],
        "field_recall": pooled["recall"],
        "field_f1": pooled["f1"],
        "per_field": per,
    }


def normalize_value(value: Any) -> str | None:
    """Canonical text of a field value: None/""/[]/{} are empty; strings casefolded, whitespace collapsed."""
    if value is None or value == "" or value == [] or value == {}:
        return None
    if isinstance(value, str):
        return " ".join(value.split()).casefold() or None
    if isinstance(value, list):
        return json.dumps(sorted(normalize_value(v) or "" for v in value))
    return json.dumps(value, sort_keys=True).casefold()


def _present(y_true: Any, y_pred: Any, index: list) -> list:
    """The labels of ``index`` that gold or the predictions use (label lists, or indicator matrices)."""
    if isinstance(y_true, list):
        used = set(y_true) | set(y_pred)
        return [label for label in index if label in used]
    import numpy as np

    used_columns = (np.asarray(y_true).sum(axis=0) + np.asarray(y_pred).sum(axis=0)) > 0
    return [k for k in index if used_columns[k]]
