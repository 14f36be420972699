"""Regression scoring: metrics per target (scipy), the training-mean and TF-IDF + ridge baselines, the ridge
fit shared with the frozen-encoder probe, and reading numbers back from generated answers.

Gold and predictions are lists of floats, one per target (``recipe.derived.target_names`` order). A
prediction of ``None`` is an unparseable generated answer: it is counted in ``invalid`` and scored as the
training mean (never dropped), so a model that rambles is no better than the mean predictor on that row.

METRICS: ``n``, ``invalid``, ``mse``, ``rmse``, ``mae``, ``pearson``, ``spearman`` (each the mean over the
targets; the headline is ``pearson``), ``{metric}_{target}`` per target when there are several, and
``per_target: {name: {mse, rmse, mae, pearson, spearman}}``. Pearson/Spearman are ``None`` where undefined
(a constant prediction, such as the training mean's).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

Metrics = dict[str, Any]
ALPHA_GRID = (0.1, 1.0, 10.0, 100.0)
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
STRIP = " \t\r\n\"'`;"
METRICS = ("mse", "rmse", "mae", "pearson", "spearman")


def _r(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def regression_metrics(
    gold: Sequence[Sequence[float]],
    pred: Sequence[Sequence[float] | None],
    names: Sequence[str],
    fallback: Sequence[float],
) -> Metrics:
    """MSE, RMSE, MAE, Pearson and Spearman per target and averaged; invalid predictions scored as ``fallback``."""
    filled = np.array([p if p is not None else fallback for p in pred], dtype=float).reshape(
        len(pred), len(names)
    )
    truth = np.array(gold, dtype=float).reshape(len(gold), len(names))
    per = {name: _target_scores(truth[:, j], filled[:, j]) for j, name in enumerate(names)}
    out: Metrics = {"n": len(gold), "invalid": sum(p is None for p in pred)}
    for metric in METRICS:
        values = [row[metric] for row in per.values()]
        defined = [v for v in values if v is not None]
        out[metric] = _r(float(np.mean(defined))) if len(defined) == len(values) else None
    if len(names) > 1:
        for name, row in per.items():
            out.update({f"{metric}_{name}": row[metric] for metric in ("pearson", "mse")})
    out["per_target"] = per
    return out


def _target_scores(gold: np.ndarray, pred: np.ndarray) -> dict[str, float | None]:
    from scipy import stats

    error = pred - gold
    mse = float(np.mean(error**2)) if len(gold) else 0.0
    out = {
        "mse": _r(mse),
        "rmse": _r(math.sqrt(mse)),
        "mae": _r(float(np.mean(np.abs(error))) if len(gold) else 0.0),
    }
    defined = len(gold) > 1 and np.ptp(gold) > 0 and np.ptp(pred) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["pearson"] = _r(stats.pearsonr(gold, pred).statistic) if defined else None
        out["spearman"] = _r(stats.spearmanr(gold, pred).statistic) if defined else None
    return out


# --- baselines --------------------------------------------------------------------------------


def training_mean(train: Sequence[dict[str, Any]]) -> list[float]:
    return [float(v) for v in np.mean([r["targets"] for r in train], axis=0)]


def mean_predictions(train: Sequence[dict[str, Any]], n: int) -> list[list[float]]:
    mean = training_mean(train)
    return [list(mean) for _ in range(n)]


def tfidf_ridge(train, validation, test, kind: str, *, chosen: dict | None = None) -> list[list[float]]:
    """TF-IDF features (features.py: pairs see both texts) and ridge regression, alpha picked on validation."""
    from .features import TextFeatures

    features = TextFeatures(train, kind)
    return ridge_fit_predict(
        features.transform(train),
        targets_of(train),
        features.transform(validation) if validation else None,
        targets_of(validation),
        features.transform(test),
        chosen=chosen,
    )


def targets_of(rows: Sequence[dict[str, Any]]) -> np.ndarray:
    return np.array([r["targets"] for r in rows], dtype=float)


def ridge_fit_predict(
    x_train, y_train, x_val, y_val, x_test, *, chosen: dict | None = None
) -> list[list[float]]:
    """Ridge regression (all targets at once); alpha chosen on the validation split by mean R^2 (each target
    weighed by its own variance), else alpha 1. ``chosen`` receives ``{"alpha": ..., "alpha_chosen_on": ...}``."""
    from sklearn.linear_model import Ridge

    alpha = choose_alpha(x_train, y_train, x_val, y_val)
    if chosen is not None:
        usable = x_val is not None and len(y_val) > 1
        chosen.update({"alpha": alpha, "alpha_chosen_on": "validation" if usable else "default"})
    pred = Ridge(alpha=alpha).fit(x_train, y_train).predict(x_test)
    return [[float(v) for v in np.atleast_1d(row)] for row in pred]


def choose_alpha(x_train, y_train, x_val, y_val) -> float:
    """The ALPHA_GRID alpha with the best validation R^2 (1 without a usable validation split)."""
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    best, best_score = 1.0, -math.inf
    if x_val is not None and len(y_val) > 1:
        for alpha in ALPHA_GRID:
            score = r2_score(y_val, Ridge(alpha=alpha).fit(x_train, y_train).predict(x_val))
            if score > best_score:
                best, best_score = alpha, score
    return best


# --- generated answers ------------------------------------------------------------------------


def parse_numbers(text: str, names: Sequence[str]) -> list[float] | None:
    """``3.80`` (one target) or ``V: 3.20; A: 2.80; D: 3.10`` (several, every name once) -> floats; else None.

    Strict, as label parsing is: the first non-empty line must be exactly that shape."""
    line = next((x.strip() for x in text.strip().splitlines() if x.strip()), "").strip(STRIP)
    line = line.removesuffix(".").strip(STRIP)  # a final full stop ends the answer, not the number
    if len(names) == 1:
        return [float(line)] if re.fullmatch(NUMBER, line) else None
    found: dict[str, float] = {}
    for part in line.split(";"):
        name, sep, value = part.partition(":")
        name, value = name.strip(), value.strip().strip(STRIP)
        if not sep or name not in names or name in found or not re.fullmatch(NUMBER, value):
            return None
        found[name] = float(value)
    if set(found) != set(names):
        return None
    values = [found[name] for name in names]
    return values if all(math.isfinite(v) for v in values) else None


def format_values(values: Sequence[float] | None, names: Sequence[str]) -> str:
    """Short readable text of a prediction or gold value (``3.80``; ``V 3.20, A 2.80``)."""
    if values is None:
        return "(invalid)"
    if len(names) == 1:
        return f"{values[0]:.2f}"
    return ", ".join(f"{n} {v:.2f}" for n, v in zip(names, values, strict=True))
