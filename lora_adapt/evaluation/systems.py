"""The model-running systems that are scored: the adapted model (head or generative), the base model
without its adapter (zero-shot generation, or a frozen-encoder probe for head mode: logistic regression
for classes, ridge regression for numbers; a sentence pair is probed with both sentences' embeddings u, v
and |u - v|, u * v, as SentEval does)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..recipe.schema import DataSpec, EvaluationSpec, TaskSpec
from . import generation, prediction
from . import regression as R
from .baselines import fit_predict
from .scoring import parse_answer

CONSTRAINED_KINDS = ("single", "relation")
CONSTRAINED_MAX_LABELS = 32
"""Label-likelihood scoring costs one forward pass per label per row: skipped above this many labels."""
PROBE_MAX_ROWS = 10_000
"""The linear probe encodes at most this many training rows (a seeded sample) to bound CPU time."""


def seeded_sample(count: int, limit: int | None, seed: int) -> list[int] | None:
    """Sorted indices of the ``limit`` of ``count`` rows that `eval` scores (evaluation.max_samples, seeded
    by training.seed); None when every row is kept. Validation during training and eval-matrix use it too."""
    if limit is None or count <= limit:
        return None
    return sorted(np.random.default_rng(seed).choice(count, limit, replace=False).tolist())


@dataclass(frozen=True)
class EvalContext:
    """What every system is scored on: the rows (and, in head mode, their tokenized form)."""

    task: TaskSpec
    data: DataSpec
    evaluation: EvaluationSpec
    kind: str
    mode: str
    labels: tuple[str, ...] | None
    tokenizer: Any
    rows: list[dict[str, Any]]
    dataset: Any = None  # head mode: datasets.Dataset aligned row for row with `rows`
    seed: int = 42
    available: int = 0  # rows before evaluation.max_samples sampled `rows`
    targets: dict[str, Any] | None = (
        None  # regression: training stats and the head's scaling (data/targets.py)
    )
    train_counts: dict[str, int] | None = None  # the training split's label counts (a binary positive class)

    @classmethod
    def stats_of(cls, prepared) -> dict[str, Any]:
        """The fields that come from the prepared data's stats."""
        stats = getattr(prepared, "stats", None) or {}
        return {
            "targets": stats.get("targets"),
            "train_counts": (stats.get("label_counts") or {}).get("train"),
        }

    @property
    def fallback(self) -> list[float] | None:
        """Regression: what an unparseable answer is scored as (the training mean)."""
        return list(self.targets["mean"]) if self.targets else None

    @property
    def pair(self) -> bool:
        return bool(self.rows) and "text_b" in self.rows[0]

    def prompts(self) -> list[str]:
        from ..data import generative_prompt

        return [generative_prompt(row, self.task, self.data, self.labels)[0] for row in self.rows]


@dataclass
class SystemOutput:
    predictions: list[Any]
    answers: list[str] | None = None  # generative: the raw generated text
    constrained: list[Any] | None = None  # generative: label-likelihood predictions
    info: dict[str, Any] = field(default_factory=dict)


def run_model(model, ctx: EvalContext, *, base_only: bool = False) -> SystemOutput:
    """Predictions of ``model`` on the scored rows; ``base_only`` switches the adapter off."""
    with prediction.no_adapter(model, base_only):
        if ctx.mode == "head":
            return SystemOutput(_head_predictions(model, ctx))
        return _generative(model, ctx)


def _head_predictions(model, ctx: EvalContext) -> list[Any]:
    logits = prediction.head_outputs(model, ctx.dataset, ctx.tokenizer, batch_size=ctx.evaluation.batch_size)
    labels = list(ctx.labels or ())
    if ctx.kind == "tagging":
        return prediction.decode_tags(logits, labels, [len(r["tokens"]) for r in ctx.rows])
    if ctx.kind == "multi":
        return [sorted(p) for p in prediction.decode_multi(logits, labels)]
    if ctx.kind == "regression":
        return prediction.decode_regression(logits, (ctx.targets or {}).get("scaling"))
    return prediction.decode_single(logits, labels)


def _generative(model, ctx: EvalContext) -> SystemOutput:
    out = generate(model, ctx)
    labels = list(ctx.labels or ())
    if ctx.kind in CONSTRAINED_KINDS and len(labels) <= CONSTRAINED_MAX_LABELS:
        out.constrained = generation.rank_choices(
            model, ctx.tokenizer, ctx.prompts(), labels, batch_size=ctx.evaluation.batch_size
        )
    return out


def generate(model, ctx: EvalContext) -> SystemOutput:
    """A generative model's parsed answers on the scored rows, with the answer budget of their kind (also
    what validation during training scores)."""
    labels = list(ctx.labels or ())
    tok = ctx.tokenizer
    budget = ctx.evaluation.max_new_tokens
    if ctx.kind in CONSTRAINED_KINDS:
        budget = generation.answer_budget(tok, labels, budget)
    elif ctx.kind == "regression" and ctx.fallback is not None:
        from ..data.targets import format_targets

        budget = generation.answer_budget(tok, [format_targets(ctx.fallback, tuple(labels))], budget)
    answers = generation.generate_answers(
        model, tok, ctx.prompts(), max_new_tokens=budget, batch_size=ctx.evaluation.batch_size
    )
    out = SystemOutput([parse_answer(a, ctx.kind, labels, ctx.task) for a in answers], answers=answers)
    out.info["max_new_tokens"] = budget
    return out


def linear_probe(
    model, ctx: EvalContext, train, train_rows: list[dict], validation, validation_rows: list[dict]
) -> SystemOutput:
    """Logistic regression (ridge regression for numbers) on the frozen base model's last hidden states
    (mean-pooled per row, per sentence for pairs, or per word for tagging); C (alpha) picked on validation."""
    from sklearn.preprocessing import StandardScaler

    token_level = ctx.kind == "tagging"
    train, train_rows, capped = _cap(train, train_rows, ctx.seed)
    x_train, y_train = _probe_xy(model, ctx, train, train_rows, token_level)
    scaler = StandardScaler().fit(x_train)
    x_val, y_val = (None, [])
    if validation is not None and len(validation):
        x_val, y_val = _probe_xy(model, ctx, validation, validation_rows, token_level)
        x_val = scaler.transform(x_val)
    feats = _features(model, ctx, ctx.dataset, ctx.rows, token_level)
    x_test = scaler.transform(np.concatenate(feats) if token_level else np.stack(feats))
    info: dict[str, Any] = {"train_rows": len(train_rows), "capped": capped}
    if ctx.kind == "regression":
        preds = R.ridge_fit_predict(scaler.transform(x_train), y_train, x_val, y_val, x_test, chosen=info)
        return SystemOutput(preds, info=info)
    flat = fit_predict(
        scaler.transform(x_train), y_train, x_val, y_val, x_test, multi=ctx.kind == "multi", chosen=info
    )
    if not token_level:
        return SystemOutput(flat, info=info)
    sizes = [len(f) for f in feats]
    starts = np.cumsum([0, *sizes])
    tags = [flat[starts[i] : starts[i + 1]] for i in range(len(feats))]
    return SystemOutput(
        [
            (list(t) + ["O"] * len(r["tokens"]))[: len(r["tokens"])]
            for t, r in zip(tags, ctx.rows, strict=True)
        ],
        info=info,
    )


def _cap(dataset, rows: list[dict], seed: int):
    if len(dataset) <= PROBE_MAX_ROWS:
        return dataset, rows, False
    keep = sorted(np.random.default_rng(seed).choice(len(dataset), PROBE_MAX_ROWS, replace=False).tolist())
    return dataset.select(keep), [rows[i] for i in keep], True


def _features(model, ctx: EvalContext, dataset, rows: list[dict], token_level: bool) -> list[np.ndarray]:
    """Frozen features per row: mean-pooled (a pair: [u, v, |u - v|, u * v] of its two sentences encoded
    apart), or per word for tagging."""
    batch = ctx.evaluation.batch_size
    if not (rows and "text_b" in rows[0]):
        return prediction.frozen_features(
            model, dataset, ctx.tokenizer, batch_size=batch, token_level=token_level
        )
    u, v = (
        np.stack(
            prediction.frozen_features(
                model,
                _single_texts(ctx, [r[column] for r in rows]),
                ctx.tokenizer,
                batch_size=batch,
                token_level=False,
            )
        )
        for column in ("text", "text_b")
    )
    return list(np.concatenate([u, v, np.abs(u - v), u * v], axis=1))


def _single_texts(ctx: EvalContext, texts: list[str]):
    import datasets

    enc = ctx.tokenizer(texts, truncation=True, max_length=ctx.data.max_seq_length)
    return datasets.Dataset.from_dict(
        {"input_ids": list(enc["input_ids"]), "attention_mask": list(enc["attention_mask"])}
    )


def _probe_xy(model, ctx: EvalContext, dataset, rows: list[dict], token_level: bool):
    feats = _features(model, ctx, dataset, rows, token_level)
    if ctx.kind == "regression":
        return np.stack(feats), R.targets_of(rows)
    if not token_level:
        return np.stack(feats), [r["label"] for r in rows]
    labels = list(ctx.labels or ())
    targets = [labels[i] for ids in dataset["labels"] for i in ids if i != -100]
    return np.concatenate(feats), targets
