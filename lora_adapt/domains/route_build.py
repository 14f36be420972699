"""`lora-adapt route build`: train the domain router of ``router.py`` from the adapters' own runs."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import artifacts as A
from ..errors import UsageError
from ..rundir import AdapterInfo
from .router import (
    NO_FALLBACK,
    PROBE_FILE,
    ROUTE_FILE,
    ROUTER_DATA,
    ROUTER_NAME,
    TFIDF_FILE,
    ProbeClassifier,
    Router,
    TfidfClassifier,
    check_fallback,
    probe_features,
    routing_text,
)

DEFAULT_THRESHOLD = 0.5
"""Below this top-domain probability a request goes to the fallback."""
HELD_OUT = {"validation": 0.1, "test": 0.2}
"""The router data's own splits: validation picks the logistic regressions' C, test is the held-out slice that
picks the router."""
PREFERENCE = ("lora", "tfidf_logreg", "frozen_probe")
"""Which router a tie on the held-out slice keeps."""
CHOICE_METRIC = "recall_macro"
"""What picks the router on the held-out slice: the mean over domains of the share routed right (balanced
accuracy), as each domain's own test split is scored; plain accuracy would favour the domain with the most
training rows. (Balanced class weights for the LoRA router, tried on the three MiniLM domains, routed the
test splits no better: 0.960 / 0.969 / 0.994 against 0.973 / 0.970 / 0.994 unweighted.)"""
PROBE_BASELINE = "base_model"
"""The evaluation's name for the frozen-encoder probe (a head run's base-model baseline)."""


def domain_rows(info: AdapterInfo) -> dict[str, list[str]]:
    """The texts of an adapter's training data per split, read through its run's recipe."""
    from ..data import load_split_rows

    if info.run is None or info.run.recipe is None:
        raise UsageError(
            f"adapter {info.name!r} ({info.folder}) has no run directory with a readable recipe",
            hint="route build reads each adapter's training data from its run: pass run directories",
        )
    splits, _ = load_split_rows(info.run.recipe.data, info.run.recipe.task)
    return {
        split: [t for t in (routing_text(r) for r in rows) if t.strip()] for split, rows in splits.items()
    }


def router_recipe(out: Path, base: str, data: Path, *, epochs: float, seed: int) -> dict[str, Any]:
    return {
        "name": out.name,
        "description": "Domain router built by `lora-adapt route build` from the adapters' training data.",
        "task": {"type": "classification", "mode": "head"},
        "model": {"name_or_path": base},
        "adapter": {"rank": 8, "alpha": 16, "dropout": 0.1, "target_modules": "all-linear"},
        "data": {"path": str(data), "max_seq_length": 128, "split": {**HELD_OUT, "seed": seed}},
        "training": {
            "epochs": epochs,
            "learning_rate": 1.0e-3,
            "scheduler": "linear",
            "warmup_ratio": 0.06,
            "batch_size": 16,
            "logging_steps": 25,
            "progress_bar": False,
            "seed": seed,
        },
        "evaluation": {
            "baselines": ["majority", "tfidf_logreg", PROBE_BASELINE],
            "explanations": {"rows": 0},
        },
        "output": {"dir": str(out.parent)},
    }


def build_router(
    sources: Mapping[str, str],
    out: Path,
    *,
    base: str | None = None,
    max_rows_per_domain: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    fallback: str | None = None,
    epochs: float = 2.0,
    seed: int = 42,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the router, keep the LoRA head, TF-IDF or the frozen probe, whichever routes the held-out slice
    best, measure it on each domain's test split, and write ``route.json`` (returned)."""
    from ..modeling.adapted import resolve_adapter
    from ..pipeline import run
    from ..recipe import recipe_from_dict
    from .adapter_set import BASE
    from .tasks import task_kind

    if len(sources) < 2:
        raise UsageError("a router needs at least two adapters", hint="--adapter NAME=RUN twice or more")
    infos = {name: resolve_adapter(source, name=name) for name, source in sources.items()}
    kinds = {name: task_kind(info).name for name, info in infos.items()}
    fallback = fallback or (BASE if "generation" in kinds.values() else NO_FALLBACK)
    check_fallback(fallback, kinds)
    texts = {name: domain_rows(info) for name, info in infos.items()}
    base = base or str(next(iter(infos.values())).base_model.get("name_or_path"))
    kept = Path(out).resolve() / ROUTER_DATA  # the recorded data path: inside the router's run directory
    recipe = recipe_from_dict(
        router_recipe(Path(out), base, kept, epochs=epochs, seed=seed), source="route build"
    )
    with A.scratch_dir("route") as tmp:
        data = _write_training_rows(texts, Path(tmp) / ROUTER_DATA, max_rows_per_domain, seed)
        counts = ", ".join(f"{n} {len(t.get('train', []))} rows" for n, t in texts.items())
        echo(f"training the router on {base}: {counts}")
        result = run(recipe, overwrite=overwrite, echo=echo, load=_reading_from(data, kept))
        assert result.run_dir is not None  # not a dry run
        run_dir = result.run_dir
        A.atomic_write_text(run_dir / ROUTER_DATA, data.read_text(encoding="utf-8"))
    held_out = _held_out_scores(result.metrics)
    chosen = max(
        held_out,
        key=lambda k: (held_out[k]["balanced_accuracy"], held_out[k]["accuracy"], -PREFERENCE.index(k)),
    )
    config = {
        "domains": list(infos),
        "adapters": {name: str(source) for name, source in sources.items()},
        "base": base,
        "chosen": chosen,
        "held_out": held_out,
        "threshold": threshold,
        "fallback": fallback,
    }
    router = Router(run_dir, config, threshold=0.0, fallback=fallback)  # measured on its top domain
    _keep(router, recipe, run_dir)
    config["test_accuracy"] = _domain_accuracy(router, {n: t.get("test", []) for n, t in texts.items()})
    _append_report(run_dir, config)
    A.atomic_write_json(run_dir / ROUTE_FILE, config)  # once, last: a router without it is refused
    return config


def _write_training_rows(
    texts: dict[str, dict[str, list[str]]], path: Path, cap: int | None, seed: int
) -> Path:
    rows = []
    for name, splits in texts.items():
        own = [*splits.get("train", []), *splits.get("validation", [])]
        if cap is not None and len(own) > cap:
            own = random.Random(seed).sample(own, cap)
        rows += [{"text": t, "label": name} for t in own]
    if not rows:
        raise UsageError("the adapters' runs hold no training texts", hint="check their recipes' data paths")
    import json

    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _reading_from(data: Path, kept: Path):
    """The pipeline's loader, reading the router's rows from ``data`` (written before the run exists) while
    the run records ``kept``, where they are copied once the run is written (so `eval` can rerun it)."""
    from dataclasses import replace

    from ..runtime import load_model_and_data

    def load(recipe, runtime, echo):
        reading = recipe.model_copy(update={"data": recipe.data.model_copy(update={"path": data})})
        loaded, prepared = load_model_and_data(reading, runtime, echo)
        stats = dict(prepared.stats)
        for key in ("files", "file_formats"):  # keyed by the path read: record the kept one
            stats[key] = {(str(kept) if k == str(data) else k): v for k, v in stats.get(key, {}).items()}
        return loaded, replace(prepared, stats=stats)

    return load


def _held_out_scores(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Balanced accuracy (:data:`CHOICE_METRIC`) and accuracy on the held-out slice of each router that can
    be kept (a baseline that failed or was skipped is not a candidate)."""
    systems = {"lora": metrics["task"]}
    for name, baseline in (("tfidf_logreg", "tfidf_logreg"), ("frozen_probe", PROBE_BASELINE)):
        systems[name] = metrics.get("baselines", {}).get(baseline, {})
    return {
        name: {"balanced_accuracy": float(scored[CHOICE_METRIC]), "accuracy": float(scored["accuracy"])}
        for name, scored in systems.items()
        if CHOICE_METRIC in scored and "accuracy" in scored
    }


def _keep(router: Router, recipe, run_dir: Path) -> None:
    """Set up ``router`` as the candidate it chose and write what a served router reads: TF-IDF refitted on
    the router data's own rows (``router_tfidf.json``); the LoRA head loaded from the run; the frozen probe
    refitted as the evaluation scored it (same rows, features, cap, standardisation and C choice) on the
    run's base (``router_probe.json``)."""
    from ..data import load_split_rows
    from ..evaluation.systems import PROBE_MAX_ROWS, seeded_sample
    from .adapter_set import AdapterSet

    chosen = router.config["chosen"]
    splits, _ = load_split_rows(recipe.data, recipe.task)
    train, validation = splits.get("train", []), splits.get("validation", [])
    if chosen == "tfidf_logreg":
        router.tfidf = TfidfClassifier.fit(train, validation)
        A.atomic_write_json(run_dir / TFIDF_FILE, router.tfidf.record())
        return
    router.head_set = AdapterSet.load({ROUTER_NAME: run_dir})
    if chosen != "frozen_probe":
        return
    kept = seeded_sample(len(train), PROBE_MAX_ROWS, recipe.training.seed)
    train = train if kept is None else [train[i] for i in kept]
    router.probe = ProbeClassifier.fit(
        probe_features(router.head_set, [r["text"] for r in train]),
        [r["label"] for r in train],
        probe_features(router.head_set, [r["text"] for r in validation]) if validation else None,
        [r["label"] for r in validation],
    )
    A.atomic_write_json(run_dir / PROBE_FILE, router.probe.record())


def _domain_accuracy(router: Router, tests: dict[str, list[str]]) -> dict[str, Any]:
    """Routing accuracy on each domain's own test split (routed to the top domain, before any threshold)."""
    out: dict[str, Any] = {}
    right = total = 0
    for name, texts in tests.items():
        if not texts:
            out[name] = None
            continue
        probs = [
            p for start in range(0, len(texts), 64) for p in router.probabilities(texts[start : start + 64])
        ]
        hits = sum(max(p, key=p.__getitem__) == name for p in probs)
        out[name] = {"rows": len(texts), "accuracy": round(hits / len(texts), 6)}
        right, total = right + hits, total + len(texts)
    out["all"] = {"rows": total, "accuracy": round(right / total, 6) if total else None}
    return out


def _append_report(run_dir: Path, config: dict[str, Any]) -> None:
    lines = ["", "## Routing", "", f"Chosen on the held-out slice: **{config['chosen']}** "]
    lines.append(
        ", ".join(
            f"{k} {v['balanced_accuracy']:.4f} ({v['accuracy']:.4f})" for k, v in config["held_out"].items()
        )
        + " (balanced accuracy, the mean over domains of the share routed right; accuracy in brackets)."
    )
    lines += ["", "| domain | test rows | routed right |", "|---|---|---|"]
    for name, score in config["test_accuracy"].items():
        if score:
            lines.append(f"| {name} | {score['rows']} | {score['accuracy']:.4f} |")
    below = (
        "the top domain answers, marked uncertain (no fallback)"
        if config["fallback"] == NO_FALLBACK
        else f"requests go to `{config['fallback']}`"
    )
    lines.append(f"\nThreshold {config['threshold']:g}; below it {below}.")
    report = run_dir / A.REPORT
    A.atomic_write_text(report, report.read_text(encoding="utf-8") + "\n".join(lines) + "\n")
