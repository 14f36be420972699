"""Routing (``model: auto``): pick the adapter for each input from its text.

`lora-adapt route build --adapter NAME=RUN ...` trains a domain classifier on the adapters' own training
data (read from their runs: each input labelled with its adapter's name) with the normal pipeline - a LoRA
classifier head on a base, scored beside its baselines (majority, TF-IDF + logistic regression, and the
frozen base model's mean-pooled features + logistic regression, the evaluation's ``base_model`` probe) on a
held-out slice of that data (the router run's test split) - and keeps whichever scores best there. The router is a run
directory plus ``route.json``: the chosen system, the threshold, the fallback, the scores on the
held-out slice, and the routing accuracy on each adapter's *own* test split (data neither the router nor
the choice saw). The rows it was trained on are kept in the run (``router_data.jsonl``, its recipe's data),
so `lora-adapt eval ROUTER_RUN` reruns like any run's. A TF-IDF router is stored as the rows it was fitted on and refitted when loaded
(deterministic; no pickled objects are ever loaded); a frozen-probe router as its standardisation and
logistic-regression coefficients (``router_probe.json``: refitting would encode every training row again),
applied to the features of the router run's base with every adapter off.

At serving time a request for ``auto`` goes to the router's top domain when its probability reaches the
threshold, else to the fallback: a named adapter, the base (only for routers with generative (sft) domains:
the base answers completions and chats, never /v1/classify) or ``none`` (the top domain answers, marked
uncertain); every answer says where it went and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import artifacts as A
from ..errors import UsageError

ROUTE_FILE = "route.json"
TFIDF_FILE = "router_tfidf.json"
PROBE_FILE = "router_probe.json"
ROUTER_DATA = "router_data.jsonl"
"""The router's training rows (each domain's texts, labelled with its name): its recipe's data, kept in
its run directory so that `lora-adapt eval ROUTER_RUN` can rerun it."""
CHOSEN = ("lora", "tfidf_logreg", "frozen_probe")
"""The systems a router can keep: its LoRA classifier head, TF-IDF + logistic regression, or logistic
regression on the frozen base model's features."""
NO_FALLBACK = "none"
"""The fallback of a router with none: an uncertain request is answered by its top domain, marked uncertain."""
ROUTER_NAME = "router"
"""The name of a LoRA router in the set it serves (it answers /v1/classify like any head adapter)."""


def routing_text(raw: Any) -> str:
    """The text a request is routed by: a plain text, a row's ``text``/``prompt``/``instruction`` or its
    ``tokens``, or the last user message of a chat."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict):
        messages = raw.get("messages")
        if isinstance(messages, list):
            users = [
                m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"
            ]
            return str(users[-1] if users else "")
        for key in ("text", "prompt", "instruction"):
            if isinstance(raw.get(key), str):
                return raw[key]
        if isinstance(raw.get("tokens"), list):
            return " ".join(map(str, raw["tokens"]))
    return ""


@dataclass
class TfidfClassifier:
    """TF-IDF + logistic regression (the pipeline's baseline features and C grid), fitted from rows."""

    texts: list[str]
    labels: list[str]
    c: float

    def __post_init__(self) -> None:
        from ..evaluation.baselines import logistic_regression
        from ..evaluation.features import make_vectorizer

        self.vectorizer = make_vectorizer()
        features = self.vectorizer.fit_transform(self.texts)
        self.model = logistic_regression(self.c).fit(features, self.labels)

    @classmethod
    def fit(cls, train: Sequence[dict], validation: Sequence[dict]) -> TfidfClassifier:
        from ..evaluation.baselines import choose_c
        from ..evaluation.features import make_vectorizer

        vectorizer = make_vectorizer()
        x_train = vectorizer.fit_transform([r["text"] for r in train])
        x_val = vectorizer.transform([r["text"] for r in validation]) if validation else None
        c = choose_c(x_train, [r["label"] for r in train], x_val, [r["label"] for r in validation])
        return cls([r["text"] for r in train], [r["label"] for r in train], c)

    def probabilities(self, texts: Sequence[str]) -> list[dict[str, float]]:
        probs = self.model.predict_proba(self.vectorizer.transform(list(texts)))
        classes = [str(c) for c in self.model.classes_]
        return [dict(zip(classes, map(float, row), strict=True)) for row in probs]

    def record(self) -> dict[str, Any]:
        return {"c": self.c, "texts": self.texts, "labels": self.labels}


@dataclass
class ProbeClassifier:
    """Logistic regression on standardised frozen-encoder features (``runner.base_features``), kept as its
    numbers: ``(x - mean) / scale``, then ``coef`` and ``intercept`` as scikit-learn's predict_proba reads
    them (a sigmoid for two classes, else a softmax)."""

    classes: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    c: float

    @classmethod
    def fit(cls, x_train: np.ndarray, y_train: Sequence[str], x_val: np.ndarray | None, y_val: Sequence[str]):
        """Standardise on the training rows, pick C on validation (the evaluation's probe: same grid and
        choice), fit."""
        from sklearn.preprocessing import StandardScaler

        from ..evaluation.baselines import fit_logreg

        scaler = StandardScaler().fit(x_train)
        x_check = scaler.transform(x_val) if x_val is not None and len(y_val) else None
        model = fit_logreg(scaler.transform(x_train), list(y_train), x_check, list(y_val))
        return cls(
            [str(k) for k in model.classes_],
            scaler.mean_,
            scaler.scale_,
            model.coef_,
            model.intercept_,
            model.C,
        )

    def probabilities_of(self, features: np.ndarray) -> list[dict[str, float]]:
        from scipy.special import expit, softmax

        if not len(features):
            return []
        z = ((np.asarray(features, dtype=np.float64) - self.mean) / self.scale) @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:
            positive = expit(z[:, 0])
            probs = np.stack([1.0 - positive, positive], axis=1)
        else:
            probs = softmax(z, axis=1)
        return [dict(zip(self.classes, map(float, row), strict=True)) for row in probs]

    def record(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "c": self.c,
            **{k: getattr(self, k).tolist() for k in ("mean", "scale", "coef", "intercept")},
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ProbeClassifier:
        arrays = {k: np.asarray(record[k], dtype=np.float64) for k in ("mean", "scale", "coef", "intercept")}
        return cls([str(k) for k in record["classes"]], c=float(record["c"]), **arrays)


def probe_features(aset, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """[texts, width]: the frozen-encoder features of ``texts``, tokenized as the router adapter of ``aset``
    was trained (``runner.base_features``)."""
    from .runner import base_features

    chunks = [
        base_features(aset, [aset.prepare(ROUTER_NAME, t or " ") for t in texts[start : start + batch_size]])
        for start in range(0, len(texts), batch_size)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, 0))


class Router:
    """Sends each input to an adapter of an :class:`AdapterSet` (see the module docstring)."""

    def __init__(self, path: Path, config: dict[str, Any], *, threshold: float, fallback: str):
        self.source, self.config = str(path), config
        self.threshold, self.fallback = threshold, fallback
        self.tfidf: TfidfClassifier | None = None
        self.probe: ProbeClassifier | None = None
        # the AdapterSet holding the router run's adapter (the served set when it fits): the LoRA router's
        # head, or the tokenizer and base a frozen probe reads features from
        self.head_set: Any = None

    def probabilities(self, texts: Sequence[str]) -> list[dict[str, float]]:
        if self.tfidf is not None:
            return self.tfidf.probabilities(texts)
        if self.probe is not None:
            return self.probe.probabilities_of(probe_features(self.head_set, texts))
        results = self.head_set.run([(ROUTER_NAME, t or " ") for t in texts], top_k=0)
        return [r["probabilities"] for r in results]

    def route(self, aset, raws: Sequence[Any], *, serves: str) -> list[dict[str, Any]]:
        """``{"adapter", "confidence", "top", "reason"}`` per input; ``serves``: "generation" or "task"."""
        texts = [routing_text(raw) for raw in raws]
        return [self._decide(aset, probs, serves) for probs in self.probabilities(texts)]

    def _decide(self, aset, probs: dict[str, float], serves: str) -> dict[str, Any]:
        top = max(probs, key=probs.__getitem__)
        confidence = round(probs[top], 6)
        reason = "confident"
        if confidence < self.threshold:
            reason = f"below the threshold {self.threshold:g}"
        elif not _serves(aset, top, serves):
            reason = "the top domain's adapter is not loaded here" if top not in aset else "wrong endpoint"
        if reason == "confident":
            return {"adapter": top, "confidence": confidence, "top": top, "reason": reason}
        if _serves(aset, self.fallback, serves):
            return {"adapter": self.fallback, "confidence": confidence, "top": top, "reason": reason}
        if _serves(aset, top, serves):  # fallback none, or one that cannot answer here (base on classify)
            return {"adapter": top, "confidence": confidence, "top": top, "reason": reason + "; no fallback"}
        raise UsageError(f"model 'auto': no adapter here can answer (router chose {top!r}: {reason})")


def _serves(aset, name: str, serves: str) -> bool:
    member = aset.members.get(name)
    return member is not None and (member.kind.name == "generation") == (serves == "generation")


@dataclass(frozen=True)
class RouteSettings:
    """A router's checked ``route.json`` and the threshold and fallback it will use (flags over file)."""

    config: dict[str, Any]
    threshold: float
    fallback: str


def check_router(
    path: Path, served: Mapping[str, str], *, threshold: float | None = None, fallback: str | None = None
) -> RouteSettings:
    """Everything about the router of ``path`` that can be checked without loading a model, for a server
    whose adapters are ``served`` (name -> task kind name): its ``route.json`` whole, the threshold a
    probability, its domains and fallback served, its own classifier (TF-IDF rows or LoRA run) readable.
    `serve` calls it before loading the base, so a bad router costs no model load."""
    path = Path(path)
    config = read_route(path)
    settings = RouteSettings(
        config,
        config["threshold"] if threshold is None else threshold,
        fallback or config["fallback"],
    )
    if not 0.0 <= settings.threshold <= 1.0:
        raise UsageError(
            f"router threshold {settings.threshold:g} is not a probability", hint="give a threshold in [0, 1]"
        )
    _check_served(path, config, settings.fallback, served, given=fallback is not None)
    _check_classifier(path, config["chosen"])
    return settings


def read_route(path: Path) -> dict[str, Any]:
    """``route.json`` of the router ``path``; missing, unreadable or malformed is a usage error naming it."""
    file = Path(path) / ROUTE_FILE
    if not file.is_file():
        raise UsageError(
            f"{path} is not a router: it has no {ROUTE_FILE}", hint="build one with `lora-adapt route build`"
        )
    try:
        config = A.read_json(file)
    except (OSError, ValueError) as exc:
        raise _damaged(file, f"it is not readable JSON ({exc})") from None
    problems = _route_problems(config)
    if problems:
        raise _damaged(file, "; ".join(problems))
    return config


def _route_problems(config: Any) -> list[str]:
    if not isinstance(config, dict):
        return ["it is not a JSON object"]
    problems = []
    domains = config.get("domains")
    if not isinstance(domains, list) or not domains or not all(isinstance(d, str) for d in domains):
        problems.append(f"`domains` is {domains!r}, not a list of adapter names")
    if config.get("chosen") not in CHOSEN:
        problems.append(f"`chosen` is {config.get('chosen')!r}, not one of {', '.join(CHOSEN)}")
    value = config.get("threshold")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(f"`threshold` is {value!r}, not a number")
    if not isinstance(config.get("fallback"), str):
        problems.append(f"`fallback` is {config.get('fallback')!r}, not a name")
    return problems


def _check_classifier(path: Path, chosen: str) -> None:
    """The chosen classifier's own files: the TF-IDF rows, or the router's run (read, not loaded) and, for a
    frozen probe, its coefficients."""
    from ..modeling.adapted import resolve_adapter

    if chosen != "tfidf_logreg":
        resolve_adapter(path, name=ROUTER_NAME)
    if chosen == "lora":
        return
    if chosen == "frozen_probe":
        read_probe(path)
        return
    file = path / TFIDF_FILE
    record = _read_classifier(file, "TF-IDF")
    if not isinstance(record, dict) or not {"texts", "labels", "c"} <= set(record):
        raise _damaged(file, "it lacks the fitted rows (`texts`, `labels`, `c`)")


def read_probe(path: Path) -> ProbeClassifier:
    """The frozen-probe router's coefficients (``router_probe.json``); missing or malformed is refused."""
    file = Path(path) / PROBE_FILE
    record = _read_classifier(file, "frozen_probe")
    try:
        probe = ProbeClassifier.from_record(record)
        width = probe.mean.shape
        if not (probe.scale.shape == width and probe.coef.shape[1:] == width and len(probe.intercept)):
            raise ValueError("the arrays' shapes disagree")
        if probe.coef.shape[0] != (1 if len(probe.classes) == 2 else len(probe.classes)):
            raise ValueError(f"{probe.coef.shape[0]} coefficient rows for {len(probe.classes)} classes")
    except (KeyError, TypeError, ValueError) as exc:
        raise _damaged(file, f"its coefficients are not usable ({exc})") from None
    return probe


def _read_classifier(file: Path, chosen: str) -> Any:
    try:
        return A.read_json(file)
    except FileNotFoundError:
        raise _damaged(file, f"it is missing (the router chose {chosen})") from None
    except (OSError, ValueError) as exc:
        raise _damaged(file, f"it is not readable JSON ({exc})") from None


def _damaged(file: Path, problem: str) -> UsageError:
    return UsageError(
        f"the router's {file.name} is damaged: {problem} ({file})",
        hint="rebuild the router with `lora-adapt route build ... --overwrite`",
    )


def load_router(path: Path, aset, *, threshold: float | None = None, fallback: str | None = None) -> Router:
    """The router of ``path`` (a `route build` run) working for ``aset``."""
    from ..modeling.adapted import resolve_adapter

    served = {name: member.kind.name for name, member in aset.members.items()}
    settings = check_router(path, served, threshold=threshold, fallback=fallback)
    router = Router(Path(path), settings.config, threshold=settings.threshold, fallback=settings.fallback)
    if settings.config["chosen"] == "tfidf_logreg":
        record = A.read_json(Path(path) / TFIDF_FILE)
        router.tfidf = TfidfClassifier(record["texts"], record["labels"], record["c"])
        return router
    info = resolve_adapter(path, name=ROUTER_NAME)
    router.head_set = aset if _fits(aset, info) else _own_set(path)
    if router.head_set is aset:
        aset.add(ROUTER_NAME, info)
    if settings.config["chosen"] == "frozen_probe":
        router.probe = read_probe(path)
    return router


def _check_served(
    path: Path, config: dict[str, Any], fallback: str, served: Mapping[str, str], *, given: bool
) -> None:
    """Refuse a router whose domains (or fallback) name adapters this server does not serve: its answers
    would name adapters that are not there."""
    from .adapter_set import BASE

    names = ", ".join(n for n in served if n != BASE) or "none"
    sources = config.get("adapters") or {}
    missing = [name for name in config["domains"] if name not in served]
    if missing:
        wanted = " ".join(f"--adapter {n}={sources.get(n, 'RUN')}" for n in missing)
        raise UsageError(
            f"the router {path} routes to {', '.join(map(repr, missing))}, which this server does not serve "
            f"(served: {names})",
            hint=f"serve every domain of the router under the name it was built with: {wanted}",
        )
    what = "--fallback" if given else f"the router's fallback (its {ROUTE_FILE})"
    if fallback not in (BASE, NO_FALLBACK) and fallback not in served:
        raise UsageError(
            f"{what} {fallback!r} is not an adapter this server serves (served: {names})",
            hint="give --fallback NAME of a served adapter, --fallback base or --fallback none",
        )
    check_fallback(fallback, {name: served[name] for name in config["domains"]}, what)


def check_fallback(fallback: str, domains: Mapping[str, str], what: str = "--fallback") -> None:
    """Refuse ``base`` as the fallback of a router whose ``domains`` (name -> task kind name) all are task
    adapters: their 'auto' requests come to /v1/classify, which the base model, which only generates, cannot
    answer (a classifier base has no base answer at all)."""
    from .adapter_set import BASE

    if fallback != BASE or any(kind == "generation" for kind in domains.values()):
        return
    raise UsageError(
        f"{what} 'base': the router's domains ({', '.join(domains)}) are task adapters, whose 'auto' "
        "requests go to /v1/classify, where the base model has no answer (it only generates, for sft domains)",
        hint=f"use --fallback {NO_FALLBACK} (an uncertain request is answered by its top domain, marked "
        "uncertain) or --fallback NAME of a served task adapter",
    )


def _fits(aset, info) -> bool:
    """Can the router's head share the served base (same identity, head class and pooling)?"""
    from ..errors import LoraAdaptError

    if info.head != aset.loaded.head or info.pooling != aset.loaded.pooling or ROUTER_NAME in aset:
        return False
    try:
        aset._check_fits(ROUTER_NAME, info)
    except LoraAdaptError:
        return False
    return True


def _own_set(path: Path):
    from .adapter_set import AdapterSet

    return AdapterSet.load({ROUTER_NAME: path})
