"""Baselines that need no adapter: majority class and TF-IDF + logistic regression (scikit-learn).

Every function returns predictions in the form of the task kind (see scoring.py), for the rows
being scored, so baselines and the adapted model go through the same scorer.

- ``majority``: the most frequent training label (multi-label: every label on at least half the
  training rows; tagging: the most frequent tag, i.e. ``O``, so no entities; extraction: each
  field's most frequent training value).
- ``tfidf_logreg``: word 1-2-gram + character 3-5-gram TF-IDF and logistic regression (features.py).
  For relations the text is augmented with the words of each marked entity and the words between
  them (``e1_``/``e2_``/``btw_`` prefixed) - the classic feature set for this task; a sentence pair
  is seen as both texts' vectors, their difference, product and cosine. For tagging,
  where TF-IDF has no meaning, the same class of model is a token-level logistic regression on
  simple word features (lowercased word, prefixes/suffixes, shape, neighbouring words).
  The regularisation strength C is picked on the validation split when there is one (never on
  the test split); otherwise C = 10.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..recipe.schema import TaskSpec
from .features import TextFeatures, relation_text
from .scoring import spans_from_tags

Rows = Sequence[dict[str, Any]]
C_GRID = (0.3, 3.0, 30.0)
DEFAULT_C = 10.0
__all__ = ["BaselineSkipped", "fit_predict", "majority", "relation_text", "tfidf_logreg", "token_logreg"]


class BaselineSkipped(Exception):
    """A baseline that does not apply to this task; the message says why (recorded as ``skipped``)."""


# --- majority -------------------------------------------------------------------------------


def majority(train: Rows, test: Rows, kind: str, task: TaskSpec) -> list[Any]:
    n = len(test)
    if kind in ("single", "relation"):
        return [Counter(r["label"] for r in train).most_common(1)[0][0]] * n
    if kind == "multi":
        counts = Counter(label for r in train for label in r["label"])
        return [sorted(label for label, k in counts.items() if k * 2 >= len(train)) for _ in range(n)]
    if kind in ("tagging", "entities"):
        tag = Counter(t for r in train for t in r["tags"]).most_common(1)[0][0]
        tags = [[tag] * len(r["tokens"]) for r in test]
        return (
            tags
            if kind == "tagging"
            else [spans_from_tags(r["tokens"], t) for r, t in zip(test, tags, strict=True)]
        )
    return [_majority_object(train, task)] * n


def _majority_object(train: Rows, task: TaskSpec) -> dict[str, Any]:
    keys = task.fields or sorted({k for r in train for k in r["output"]})
    out = {}
    for key in keys:
        values = Counter(json.dumps(r["output"].get(key), sort_keys=True) for r in train)
        out[key] = json.loads(values.most_common(1)[0][0])
    return out


# --- TF-IDF + logistic regression -------------------------------------------------------------


def tfidf_logreg(
    train: Rows, validation: Rows, test: Rows, kind: str, task: TaskSpec, *, chosen: dict | None = None
) -> list[Any]:
    """Fit on ``train`` (C picked on ``validation``, recorded in ``chosen``) and predict ``test``."""
    if kind in ("tagging", "entities"):
        return token_logreg(train, validation, test, kind, chosen=chosen)
    if kind == "extraction":
        raise BaselineSkipped("TF-IDF + logistic regression does not apply to structured extraction")
    features = TextFeatures(train, kind)
    x_train = features.transform(train)
    x_val = features.transform(validation) if validation else None
    x_test = features.transform(test)
    return fit_predict(
        x_train,
        [r["label"] for r in train],
        x_val,
        [r["label"] for r in validation],
        x_test,
        multi=kind == "multi",
        chosen=chosen,
    )


def fit_predict(
    x_train,
    y_train: Sequence[Any],
    x_val,
    y_val: Sequence[Any],
    x_test,
    *,
    multi: bool = False,
    chosen: dict | None = None,
) -> list[Any]:
    """Logistic regression with C chosen on the validation split (macro-F1); multi-label: one-vs-rest.
    ``chosen`` receives ``{"C": ..., "C_chosen_on": "validation" | "default"}``."""
    from sklearn.preprocessing import MultiLabelBinarizer

    if not multi and len(set(y_train)) < 2:
        return [y_train[0]] * x_test.shape[0]
    binarizer = MultiLabelBinarizer().fit(list(y_train) + list(y_val)) if multi else None
    targets = binarizer.transform(y_train) if binarizer is not None else list(y_train)
    gold_val = binarizer.transform(y_val) if binarizer is not None and len(y_val) else list(y_val)
    model = fit_logreg(x_train, targets, x_val, gold_val, multi=multi, chosen=chosen)
    pred = model.predict(x_test)
    if binarizer is not None:
        return [sorted(labels) for labels in binarizer.inverse_transform(pred)]
    return [p.item() if hasattr(p, "item") else p for p in pred]


def fit_logreg(x_train, y_train, x_val, y_val, *, multi: bool = False, chosen: dict | None = None):
    """Logistic regression fitted on the training rows with C chosen on validation (:func:`choose_c`);
    ``chosen`` receives ``{"C": ..., "C_chosen_on": "validation" | "default"}``. What :func:`fit_predict`
    predicts with, and what a frozen-probe router keeps."""
    best_c = choose_c(x_train, y_train, x_val, y_val, multi=multi)
    if chosen is not None:
        usable = x_val is not None and len(y_val) and len(set(map(str, y_train))) >= 2
        chosen.update({"C": best_c, "C_chosen_on": "validation" if usable else "default"})
    return _logreg(best_c, multi).fit(x_train, y_train)


def choose_c(x_train, y_train, x_val, y_val, *, multi: bool = False) -> float:
    """The C of C_GRID with the best validation macro-F1 (DEFAULT_C without a usable validation split)."""
    from sklearn.metrics import f1_score

    best_c, best_f1 = DEFAULT_C, -1.0
    if x_val is None or not len(y_val) or len(set(map(str, y_train))) < 2:
        return best_c
    for c in C_GRID:
        predicted = _logreg(c, multi).fit(x_train, y_train).predict(x_val)
        f1 = f1_score(y_val, predicted, average="macro", zero_division=0)
        if f1 > best_f1:
            best_c, best_f1 = c, f1
    return best_c


def logistic_regression(c: float):
    """The baseline's classifier (unfitted)."""
    return _logreg(c, False)


def _logreg(c: float, multi: bool):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    model = LogisticRegression(C=c, max_iter=1000)
    return OneVsRestClassifier(model) if multi else model


# --- tagging: token-level logistic regression -------------------------------------------------


def token_logreg(
    train: Rows, validation: Rows, test: Rows, kind: str, *, chosen: dict | None = None
) -> list[Any]:
    """Per-token logistic regression on word features; tags (tagging) or entity spans (entities)."""
    from sklearn.feature_extraction import DictVectorizer

    vectorizer = DictVectorizer()
    x_train = vectorizer.fit_transform([f for r in train for f in sentence_features(r["tokens"])])
    y_train = [t for r in train for t in r["tags"]]
    x_val = (
        vectorizer.transform([f for r in validation for f in sentence_features(r["tokens"])])
        if validation
        else None
    )
    y_val = [t for r in validation for t in r["tags"]]
    x_test = vectorizer.transform([f for r in test for f in sentence_features(r["tokens"])])
    flat = fit_predict(x_train, y_train, x_val, y_val, x_test, chosen=chosen)
    tags, start = [], 0
    for r in test:
        tags.append(list(flat[start : start + len(r["tokens"])]))
        start += len(r["tokens"])
    return (
        tags
        if kind == "tagging"
        else [spans_from_tags(r["tokens"], t) for r, t in zip(test, tags, strict=True)]
    )


def sentence_features(tokens: Sequence[str]) -> list[dict[str, float]]:
    return [word_features(tokens, i) for i in range(len(tokens))]


def word_features(tokens: Sequence[str], i: int) -> dict[str, float]:
    word = tokens[i]
    low = word.lower()
    feats = {
        f"w={low}": 1.0,
        f"suf2={low[-2:]}": 1.0,
        f"suf3={low[-3:]}": 1.0,
        f"pre3={low[:3]}": 1.0,
        f"shape={shape(word)}": 1.0,
        "title": float(word.istitle()),
        "upper": float(word.isupper()),
        "digit": float(any(ch.isdigit() for ch in word)),
        "first": float(i == 0),
    }
    for offset in (-2, -1, 1, 2):
        j = i + offset
        other = tokens[j] if 0 <= j < len(tokens) else "<pad>"
        feats[f"{offset}w={other.lower()}"] = 1.0
        feats[f"{offset}shape={shape(other)}"] = 1.0
    return feats


def shape(word: str) -> str:
    """Xxxx -> Xx, ABC-12 -> X-d (runs of one character class collapsed)."""
    classes = ["X" if c.isupper() else "x" if c.islower() else "d" if c.isdigit() else c for c in word]
    return "".join(c for k, c in enumerate(classes) if k == 0 or c != classes[k - 1])
