"""For a run's report: the words that drive the adapted model's decisions over a sample of the test split,
beside the TF-IDF baseline's largest weights for the same class - so a reader sees whether the adapter
learned the domain or a shortcut.

Groups: one per predicted class (each sampled row is explained toward the class the model predicts);
for regression two per target (words that raise it, words that lower it). A word's score in a group is
its summed attribution over the sample (case-folded). An explanation whose Integrated Gradients did not
converge within ``max_steps`` (see attribution.py) is left out of the sums and counted in ``unconverged``:
its words would be ranked on a fraction of the output. The TF-IDF side refits the baseline's features on
the training split (the baseline's own model and C, or alpha for ridge, chosen on validation as the
baseline chose it) and lists the word n-grams
with the largest weights for the class (the character n-grams it also uses are left out: they are not
words); for sentence pairs, the weights of words found in both texts (the a*b block of the pair features).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..evaluation.systems import seeded_sample
from .attribution import Attributor, Explanation, Head

METHOD = (
    "Integrated Gradients (Captum, {steps} steps, doubled up to {max_steps} until the attributions sum to "
    "the output gap within {tolerance:.0%}) at the word embeddings of the adapted model, baseline: "
    "padding tokens; sub-words summed into words."
)


def influential_words(
    attributor: Attributor,
    rows: Sequence[dict[str, Any]],
    train: Sequence[dict[str, Any]],
    *,
    kind: str,
    top: int,
    sample: int,
    seed: int,
    validation: Sequence[dict[str, Any]] = (),
    tfidf: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``{"method", "rows", "explanations", "unconverged", "steps_used", "max_abs_delta",
    "groups": [{"name", "words": [[w, score]], "tfidf": [[f, w]]}]}`` (``max_abs_delta`` over the
    converged explanations, which alone are summed)."""
    picked = seeded_sample(len(rows), sample, seed)  # the rows `eval` would score at that cap
    picked = list(range(len(rows))) if picked is None else picked
    head = attributor.head
    scores: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    deltas, steps_used, unconverged, total = [], [], 0, 0
    for i in picked:
        row = rows[i]
        for explanation in _explanations(attributor, row):
            total += 1
            steps_used.append(explanation.steps)
            if not explanation.converged:
                unconverged += 1
                continue
            deltas.append(abs(explanation.delta))
            for word in explanation.words:
                for group, value in _groups(head, explanation, word.score):
                    scores[group][word.text.casefold()] += value
    tfidf = top_features(train, validation, kind, head, top, chosen=tfidf)
    names = _group_names(head)
    groups = [
        {
            "name": name,
            "words": _ranked(scores.get(name, {}), top, negative=name.endswith("lowers")),
            "tfidf": tfidf.get(name, []),
        }
        for name in names
        if name in scores or name in tfidf
    ]
    return {
        "method": METHOD.format(
            steps=attributor.steps, max_steps=attributor.max_steps, tolerance=attributor.tolerance
        ),
        "rows": len(picked),
        "explanations": total,
        "unconverged": unconverged,
        "steps_used": [min(steps_used, default=0), max(steps_used, default=0)],
        "max_abs_delta": round(max(deltas, default=0.0), 6),
        "groups": groups,
    }


def _explanations(attributor: Attributor, row: dict[str, Any]) -> list[Explanation]:
    text, text_b = row["text"], row.get("text_b")
    if attributor.head.kind == "classification":
        return [attributor.explain(text, text_b)]
    return [attributor.explain(text, text_b, target=j) for j in range(len(attributor.head.names))]


def _groups(head: Head, explanation: Explanation, score: float) -> list[tuple[str, float]]:
    if head.kind == "classification":
        return [(explanation.prediction, score)]
    direction = "raises" if score >= 0 else "lowers"
    return [(f"{explanation.target} {direction}", score)]


def _group_names(head: Head) -> list[str]:
    if head.kind == "classification":
        return list(head.names)
    return [f"{name} {d}" for name in head.names for d in ("raises", "lowers")]


def _ranked(scores: dict[str, float], top: int, *, negative: bool = False) -> list[list[Any]]:
    order = sorted(scores.items(), key=lambda kv: kv[1] if negative else -kv[1])
    return [[word, round(value, 4)] for word, value in order[:top] if (value < 0) == negative and value != 0]


def top_features(
    train: Sequence[dict[str, Any]],
    validation: Sequence[dict[str, Any]],
    kind: str,
    head: Head,
    top: int,
    *,
    chosen: dict[str, Any] | None = None,
) -> dict[str, list[list[Any]]]:
    """The TF-IDF baseline's word n-grams with the largest weights per group (see the module docstring):
    the baseline's own model, with the C (alpha for regression) the scored baseline recorded in ``chosen``
    (metrics.json), else chosen on ``validation`` as the baseline chooses it."""
    from ..evaluation.features import TextFeatures

    if not train:
        return {}
    features = TextFeatures(train, "relation" if kind == "relation" else kind)
    x = features.transform(train)
    x_val = features.transform(validation) if validation else None
    words = features.word_names()
    if head.kind == "regression":
        from sklearn.linear_model import Ridge

        from ..evaluation.regression import choose_alpha, targets_of

        y = targets_of(train)
        alpha = (chosen or {}).get("alpha") or choose_alpha(x, y, x_val, targets_of(validation))
        coef = np.atleast_2d(Ridge(alpha=alpha).fit(x, y).coef_)
        out = {}
        for j, name in enumerate(head.names):
            weights = _word_weights(coef[j], len(words), features.pair, x.shape[1])
            out[f"{name} raises"] = _top(weights, words, top, sign=1)
            out[f"{name} lowers"] = _top(weights, words, top, sign=-1)
        return out
    from ..evaluation.baselines import choose_c, logistic_regression

    labels = [r["label"] for r in train]
    if len(set(labels)) < 2:
        return {}
    c = (chosen or {}).get("C") or choose_c(x, labels, x_val, [r["label"] for r in validation])
    return _class_features(logistic_regression(c).fit(x, labels), words, features.pair, x.shape[1], top)


def _class_features(model, words: list[str], pair: bool, width: int, top: int) -> dict[str, list[list[Any]]]:
    classes = list(model.classes_)
    rows = model.coef_ if len(classes) > 2 else np.vstack([-model.coef_[0], model.coef_[0]])
    return {
        str(label): _top(_word_weights(rows[k], len(words), pair, width), words, top, sign=1)
        for k, label in enumerate(classes)
    }


def _word_weights(coef: np.ndarray, n_words: int, pair: bool, width: int) -> np.ndarray:
    """A word's weight: its column in the word block; for a pair, in the a*b block (the word in both texts,
    which is what a pair's label or score turns on)."""
    if not pair:
        return coef[:n_words]
    block = (width - 1) // 4  # [a, b, |a-b|, a*b, cosine]
    return coef[3 * block : 3 * block + n_words]


def _top(weights: np.ndarray, words: list[str], top: int, *, sign: int) -> list[list[Any]]:
    order = np.argsort(-sign * weights)[:top]
    return [[words[i], round(float(weights[i]), 4)] for i in order if sign * weights[i] > 0]
