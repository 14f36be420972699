"""`lora-adapt eval-matrix SOURCE...`: every adapter (the sources, any composition of them, the base) on
every source domain's test split, so the cost of sharing or merging domains is a number.

A *domain* is a source trained on data (a run directory whose recipe this version reads); a composition
(`lora-adapt compose`) is scored but has no test split of its own. Cells:

- task adapters: the task's headline metric (macro-F1, entity F1, field F1, ...), scored by the same
  scorer as `eval`; an adapter whose label set differs from the domain's is ``n/a``;
- sft adapters and the base: the mean token loss on the domain's completions (lower is better) and its
  perplexity, the number the run's own metrics.json reports.

Writes ``matrix.json``, ``matrix.md`` and ``matrix.png`` (a heatmap) into ``--out``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from .. import artifacts as A
from ..errors import UsageError
from .adapter_set import BASE, AdapterSet
from .scores import headline_metric, score_task_rows

LOSS_BATCH = 8


def eval_matrix(
    sources: Mapping[str, str],
    out: Path,
    *,
    max_rows: int | None = None,
    echo: Callable[[str], None] = print,
    **load: Any,
) -> dict[str, Any]:
    """Score every system on every domain's test split; write matrix.json / .md / .png into ``out``."""
    aset = AdapterSet.load(dict(sources), **load)
    domains = {n: m for n, m in aset.members.items() if n != BASE and _is_domain(m)}
    if not domains:
        raise UsageError(
            "no source has a test split to score on",
            hint="pass the run directories the adapters were trained in",
        )
    kinds = {
        n: "loss" if m.kind.name == "generation" else headline_metric(m.kind) for n, m in domains.items()
    }
    if len({metric == "loss" for metric in kinds.values()}) > 1:
        raise UsageError(
            "eval-matrix compares one kind of domain at a time: "
            + ", ".join(f"{n} ({'sft: loss' if k == 'loss' else k})" for n, k in kinds.items()),
            hint="run it once for the sft adapters and once for the task adapters",
        )
    generative = "loss" in kinds.values()
    systems = list(aset.members)  # adapters in the order given, then the base (causal LMs only)
    systems = [n for n in systems if n != BASE] + ([BASE] if BASE in aset.members else [])
    cells: dict[str, dict[str, Any]] = {}
    for domain, member in domains.items():
        echo(f"domain {domain}: scoring {len(systems)} systems ...")
        recipe = member.info.run.recipe  # type: ignore[union-attr]
        cells[domain] = (
            _loss_row(aset, systems, recipe, max_rows)
            if generative
            else _task_row(aset, systems, domain, recipe, max_rows, echo)
        )
    metrics = set(kinds.values())
    result = {
        # one name when every domain reports the same metric; else each domain's, in `metrics`
        "metric": metrics.pop() if len(metrics) == 1 else "headline metric",
        "metrics": kinds,
        "lower_is_better": generative,
        "domains": list(domains),
        "systems": systems,
        "compositions": {n: c for n, m in aset.members.items() if (c := _composition(m)) is not None},
        "cells": cells,
    }
    out.mkdir(parents=True, exist_ok=True)
    A.atomic_write_json(out / "matrix.json", result)
    A.atomic_write_text(out / "matrix.md", render(result))
    _heatmap(result, out / "matrix.png")
    return result


def _composition(member) -> dict[str, Any] | None:
    """The ``composition`` block of a `compose` run (None for anything else)."""
    run = member.info.run if member.info is not None else None
    return run.manifest.get("composition") if run is not None else None


def _is_domain(member) -> bool:
    info = member.info
    return (
        info is not None and info.run is not None and info.run.recipe is not None and not _composition(member)
    )


def _task_row(
    aset: AdapterSet, systems: list[str], domain: str, recipe, max_rows: int | None, echo
) -> dict[str, Any]:
    from ..data import load_split_rows
    from ..evaluation.systems import seeded_sample

    splits, _ = load_split_rows(recipe.data, recipe.task)
    split = "test" if splits.get("test") else "validation"  # as the sft rows fall back (_loss_row)
    rows = list(splits.get(split) or [])
    if not rows:
        echo(f"warning: domain {domain} has no test or validation rows: its column is n/a")
        return {name: None for name in systems}
    if split != "test":
        echo(f"warning: domain {domain} has no test split: scoring its validation split")
    keep = seeded_sample(len(rows), max_rows, recipe.training.seed)  # the rows `eval --max-samples` scores
    rows = rows if keep is None else [rows[i] for i in keep]
    own = aset[domain]
    row: dict[str, Any] = {}
    for name in systems:
        member = aset.members[name]
        if name == BASE or member.kind.name != own.kind.name or member.kind.labels != own.kind.labels:
            row[name] = None  # a different task or label set: not comparable
            continue
        metrics = score_task_rows(aset, name, rows, recipe.task)
        row[name] = {"value": metrics[headline_metric(own.kind)], "rows": len(rows), "split": split}
    return row


def _loss_row(aset: AdapterSet, systems: list[str], recipe, max_rows: int | None) -> dict[str, Any]:
    from ..data import prepare_data
    from ..evaluation.systems import seeded_sample

    prepared = prepare_data(recipe.data, recipe.task, aset.tokenizer, head=False)
    test = prepared.test if prepared.test is not None else prepared.validation
    if test is None or not len(test):
        return {name: None for name in systems}
    keep = seeded_sample(len(test), max_rows, recipe.training.seed)
    if keep is not None:
        test = test.select(keep)
    row: dict[str, Any] = {}
    for name in systems:
        loss = completion_loss(aset, name, test["input_ids"], test["completion_mask"])
        row[name] = {
            "value": round(loss, 6),
            "perplexity": round(math.exp(min(loss, 50.0)), 4),
            "rows": len(test),
        }
    return row


@torch.no_grad()
def completion_loss(aset: AdapterSet, name: str, ids: list[list[int]], masks: list[list[int]]) -> float:
    """Mean cross-entropy over the trained (completion) tokens, as SFT training measures it."""
    from ..evaluation.prediction import model_device

    model = aset.model if aset.model is not None else aset.loaded.model
    device = model_device(model)
    pad = aset.tokenizer.pad_token_id or 0
    total, count = 0.0, 0
    for start in range(0, len(ids), LOSS_BATCH):
        chunk, mask = ids[start : start + LOSS_BATCH], masks[start : start + LOSS_BATCH]
        width = max(len(x) for x in chunk)
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in chunk], device=device)
        attention = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in chunk], device=device)
        labels = torch.tensor(
            [
                [t if m else -100 for t, m in zip(x, k, strict=True)] + [-100] * (width - len(x))
                for x, k in zip(chunk, mask, strict=True)
            ],
            device=device,
        )
        with aset.routed([name] * len(chunk)):
            logits = model(input_ids=input_ids, attention_mask=attention).logits.float()
        losses = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]),
            labels[:, 1:].reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )
        total += float(losses)
        count += int((labels[:, 1:] != -100).sum())
    return total / max(count, 1)


def render(result: dict[str, Any]) -> str:
    metric, domains, systems = result["metric"], result["domains"], result["systems"]
    better = "lower is better" if result["lower_is_better"] else "higher is better"
    lines = [f"# Eval matrix: {metric} on each domain's test split ({better})", ""]
    per = result.get("metrics") or {}
    heads = [f"{d} ({per[d]})" if len(set(per.values())) > 1 else d for d in domains]
    lines += ["| system | " + " | ".join(heads) + " |", "|---|" + "---|" * len(domains)]
    for system in systems:
        label = system + (" (composition)" if system in result["compositions"] else "")
        values = [result["cells"][d].get(system) for d in domains]
        lines.append(
            f"| {label} | " + " | ".join("n/a" if v is None else f"{v['value']:.4f}" for v in values) + " |"
        )
    for name, comp in result["compositions"].items():
        parts = ", ".join(
            f"{s['name']} x {w:g}" for s, w in zip(comp["sources"], comp["weights"], strict=True)
        )
        lines.append(f"\n`{name}`: {comp['method']} of {parts}.")
    return "\n".join(lines) + "\n"


def _heatmap(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    domains, systems = result["domains"], result["systems"]
    values = np.array(
        [
            [np.nan if result["cells"][d].get(s) is None else result["cells"][d][s]["value"] for d in domains]
            for s in systems
        ]
    )
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(domains), 0.9 + 0.45 * len(systems)))
    image = ax.imshow(values, cmap="viridis_r" if result["lower_is_better"] else "viridis", aspect="auto")
    ax.set_xticks(range(len(domains)), domains, rotation=30, ha="right")
    ax.set_yticks(range(len(systems)), systems)
    for i in range(len(systems)):
        for j in range(len(domains)):
            text = "n/a" if np.isnan(values[i, j]) else f"{values[i, j]:.3f}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                color="white" if not np.isnan(values[i, j]) else "gray",
                fontsize=8,
            )
    fig.colorbar(image, ax=ax, label=result["metric"])
    ax.set_title(f"{result['metric']} per domain test split")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
