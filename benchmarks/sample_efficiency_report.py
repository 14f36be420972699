"""Tables and the sample-efficiency plot from benchmarks/results/sample_efficiency.json.

Runs are grouped by tag (`shipped`: the recipes with the defaults before the small-data work;
`defaults`: the recipes with the new defaults; any other tag: one ablation). Per (dataset, training
rows) each system's headline score is the mean over seeds with its range. The TF-IDF, probe and
majority baselines do not depend on training settings: a tag that did not run them borrows them from
another tag's run on the same sample (same dataset, rows and seed), and the table says so. The marks
are the issue's: at 500 rows and more LoRA within 2 points of full fine-tuning and above TF-IDF + LR;
at 250 within 5 points and no collapse. A hand-written findings file, when present, is appended.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

SYSTEMS = (
    ("lora", "LoRA"),
    ("full_finetune", "full FT"),
    ("tfidf_logreg", "TF-IDF+LR"),
    ("base_model", "frozen probe"),
    ("majority", "majority"),
)
BORROWED = ("tfidf_logreg", "base_model", "majority")
PLOTTED = (
    ("lora", "LoRA", "-", "o"),
    ("full_finetune", "full FT", "--", "s"),
    ("tfidf_logreg", "TF-IDF + LR", ":", "^"),
    ("base_model", "frozen probe", "-.", "v"),
)
NAMES = {
    "sms_spam": "SMS spam (macro-F1)",
    "banking77": "BANKING77 (macro-F1)",
    "conll2003_ner": "CoNLL-2003 (entity F1)",
    "semeval2010_re": "SemEval-2010 T8 (official macro-F1)",
    "stsbenchmark": "STS-B (Pearson r)",
    "emobank": "EmoBank (Pearson r, mean of V/A/D)",
}
MAIN_TAGS = ("defaults", "shipped")
OLD_DEFAULTS = (  # the training defaults before the small-data work, as --set overrides
    "training.min_steps=0",
    "training.head_lr_ratio=1",
    "training.lora_plus_ratio=1",
    "training.class_weights=none",
)
FINDINGS = Path(__file__).resolve().parent / "sample_efficiency_findings.md"


def score(record: dict[str, Any], system: str) -> float | None:
    result = record["systems"].get(system) or {}
    return result.get(record["headline"])


def with_borrowed(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run with the baselines it lacks taken from a run on the same sample (marked `borrowed`)."""
    donors: dict[tuple, dict[str, Any]] = {}
    for r in runs:
        for name in BORROWED:
            if score(r, name) is not None:
                donors.setdefault((r["dataset"], r["rows"], r["seed"], name), r["systems"][name])
    out = []
    for r in runs:
        systems = dict(r["systems"])
        borrowed = []
        for name in BORROWED:
            donor = donors.get((r["dataset"], r["rows"], r["seed"], name))
            if score(r, name) is None and donor is not None:
                systems[name], borrowed = donor, [*borrowed, name]
        out.append({**r, "systems": systems, "borrowed": borrowed})
    return out


def _order(dataset: str) -> int:
    return list(NAMES).index(dataset) if dataset in NAMES else len(NAMES)


def grouped(runs: list[dict[str, Any]], tag: str) -> dict[tuple[str, int], list[dict[str, Any]]]:
    out: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        if r["tag"] == tag:
            out[(r["dataset"], r["rows"])].append(r)
    return dict(sorted(out.items(), key=lambda kv: (_order(kv[0][0]), kv[0][1])))


def summary(records: list[dict[str, Any]], system: str) -> dict[str, Any] | None:
    values = [v for v in (score(r, system) for r in records) if v is not None]
    if not values:
        return None
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "n": len(values)}


def collapsed(record: dict[str, Any]) -> bool:
    """The run's health verdict; runs recorded before `health` existed: one label for 95%+ of units."""
    health = record.get("health") or {}
    if "collapsed" in health:
        return bool(health["collapsed"])
    lora = record["systems"].get("lora") or {}
    if record["headline"] == "f1":
        return lora.get("entities_predicted", 1) == 0
    predicted = {k: v for k, v in (lora.get("predicted") or {}).items() if v is not None}
    total = sum(predicted.values())
    return bool(total) and max(predicted.values()) >= 0.95 * total


def paired_gap(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """LoRA - full FT in points, over the seeds that ran both (a seed with LoRA alone is left out)."""
    gaps = [
        100 * (lora - full)
        for lora, full in ((score(r, "lora"), score(r, "full_finetune")) for r in records)
        if lora is not None and full is not None
    ]
    if not gaps:
        return None
    return {"mean": statistics.fmean(gaps), "min": min(gaps), "max": max(gaps), "n": len(gaps)}


def mark(rows: int, stats: dict[str, Any], gap: dict[str, Any] | None, falls: int) -> str:
    lora, tfidf = stats["lora"], stats["tfidf_logreg"]
    if lora is None or gap is None:
        return "n/a"
    if rows < 500:
        return "met" if gap["mean"] >= -5 and not falls else "**missed**"
    above = tfidf is None or lora["mean"] > tfidf["mean"]
    return "met" if gap["mean"] >= -2 and above else "**missed**"


def tag_table(runs: list[dict[str, Any]], tag: str) -> list[str]:
    lines = [
        "| dataset | rows | "
        + " | ".join(label for _, label in SYSTEMS)
        + " | LoRA - full FT (paired seeds) | collapses | mark |",
        "|---|---|" + "---|" * (len(SYSTEMS) + 3),
    ]
    for (dataset, rows), records in grouped(runs, tag).items():
        stats = {name: summary(records, name) for name, _ in SYSTEMS}
        falls = sum(collapsed(r) for r in records)
        gap = paired_gap(records)
        if gap is None:
            shown = "–"
        elif gap["n"] == 1:
            shown = f"{gap['mean']:+.1f}"
        else:
            shown = f"{gap['mean']:+.1f} [{gap['min']:+.1f} to {gap['max']:+.1f}] ({gap['n']})"
        borrowed = {name for r in records for name in r.get("borrowed", [])}
        lines.append(
            f"| {dataset} | {rows} | "
            + " | ".join(_cell(stats[name], name in borrowed) for name, _ in SYSTEMS)
            + f" | {shown} | {falls}/{len(records)} | {mark(rows, stats, gap, falls)} |"
        )
    return lines


def ablation_table(runs: list[dict[str, Any]], reference: str, fallback: str = "defaults") -> list[str]:
    """Each ablation's LoRA score against the reference tag's LoRA on the same sample and seed (the
    ``fallback`` tag's where the reference did not run that sample; the run's own ``reference`` when it
    names the tag it is one change from)."""
    refs: dict[str, dict[tuple, dict[str, Any]]] = {}
    for r in runs:
        refs.setdefault(r["tag"], {})[(r["dataset"], r["rows"], r["seed"])] = r
    refs.setdefault(reference, {})
    refs.setdefault(fallback, {})
    lines = [
        "| change (tag) | dataset | rows | seed | LoRA | reference LoRA (tag) | delta (points) | steps | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: (r["tag"], _order(r["dataset"]), r["rows"], r["seed"])):
        if r["tag"] in (*MAIN_TAGS, reference):
            continue
        sample = (r["dataset"], r["rows"], r["seed"])
        tag = r.get("reference") or (reference if sample in refs[reference] else fallback)
        base = refs.get(tag, {}).get(sample)
        own, other = score(r, "lora"), score(base, "lora") if base else None
        delta = f"{100 * (own - other):+.1f}" if own is not None and other is not None else "–"
        lines.append(
            f"| {r['tag']}: `{' '.join(_changes(r))}` | {r['dataset']} | {r['rows']} | {r['seed']} | "
            f"{_f(own)} | {_f(other)}{f' ({tag})' if base else ''} | {delta} | "
            f"{r['train'].get('global_step')} | {r['wall_s']:.0f} |"
        )
    return lines


def _changes(record: dict[str, Any]) -> list[str]:
    """What an ablation changed: its overrides after the ones every sweep sets and the old defaults (or
    what the run record says it changed, for runs whose setting became a default later)."""
    if record.get("change"):
        return [record["change"]]
    return [o for o in record["overrides"][5:] if not o.startswith("evaluation.") and o not in OLD_DEFAULTS]


def render(report: dict[str, Any]) -> str:
    runs = with_borrowed(report["runs"])
    tags = list(dict.fromkeys(r["tag"] for r in runs))
    lines = [
        "# Sample efficiency on CPU: score against training rows (MiniLM-L6, the shipped task recipes)",
        "",
        "Every number below comes from `benchmarks/sample_efficiency.py` (commands at the end). Cells: mean "
        "over seeds [min-max] (n); one seed above 500 rows. Only the training split is sampled (seeded, "
        "stratified by label for SMS, BANKING77 and SemEval); validation and test are whole in every run. "
        "`LoRA - full FT` is in points of the headline metric (macro-F1; entity F1 for CoNLL; official "
        "macro-F1 for SemEval). Baselines marked * were measured on the same samples in another run (`shipped` "
        "or an ablation: they do not depend on training settings).",
        "",
    ]
    for tag, title in (
        ("defaults", "New defaults"),
        ("shipped", "Before: the shipped recipes, old defaults"),
    ):
        if tag in tags:
            lines += [f"## {title} (`{tag}`)", "", *tag_table(runs, tag), ""]
    if any(t not in MAIN_TAGS for t in tags):
        lines += [
            "## Ablations: one change at a time from the old defaults (`shipped`), else from the new ones, or from"
            " the tag named in brackets (LoRA only)",
            "",
            *ablation_table(runs, "shipped"),
            "",
        ]
    if FINDINGS.is_file():
        lines += [FINDINGS.read_text().rstrip(), ""]
    lines += [
        "## Commands",
        "",
        *[f"- `{c}`" for c in report.get("commands", [])],
        "",
        f"Machine: {report.get('machine')}; torch {report.get('versions', {}).get('torch')}, transformers "
        f"{report.get('versions', {}).get('transformers')}, peft {report.get('versions', {}).get('peft')}. "
        "2 CPU cores shared with other jobs (load 6-20): wall times are not comparable between runs.",
    ]
    return "\n".join(lines).rstrip() + "\n"


def _cell(stat: dict[str, Any] | None, borrowed: bool = False) -> str:
    if stat is None:
        return "–"
    star = "*" if borrowed else ""
    if stat["n"] == 1:
        return f"{stat['mean']:.3f}{star}"
    return f"{stat['mean']:.3f}{star} [{stat['min']:.3f}-{stat['max']:.3f}] ({stat['n']})"


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def plot(report: dict[str, Any], tag: str, path: Path, before: str | None = "shipped") -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = with_borrowed(report["runs"])
    datasets = sorted({r["dataset"] for r in runs if r["tag"] == tag}, key=_order)
    if not datasets:
        return False
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.3 * len(datasets), 3.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        lines = [(tag, system, label, style, mk, 1.0) for system, label, style, mk in PLOTTED]
        if before and before != tag:
            lines.append((before, "lora", f"LoRA, {before} defaults", "-", "x", 0.45))
        for source, system, label, style, mk, alpha in lines:
            by_rows = {k[1]: v for k, v in grouped(runs, source).items() if k[0] == dataset}
            points = [(n, summary(rs, system)) for n, rs in sorted(by_rows.items())]
            points = [(n, s) for n, s in points if s is not None]
            if not points:
                continue
            xs = [n for n, _ in points]
            ax.plot(xs, [s["mean"] for _, s in points], style, marker=mk, label=label, alpha=alpha)
            ax.fill_between(
                xs, [s["min"] for _, s in points], [s["max"] for _, s in points], alpha=0.15 * alpha
            )
        sizes = sorted({r["rows"] for r in runs if r["dataset"] == dataset and r["tag"] == tag})
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_title(NAMES.get(dataset, dataset), fontsize=10)
        ax.set_xlabel("training rows")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test score (mean over seeds; band: min-max)")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Sample efficiency, MiniLM-L6, task recipes ({tag})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_outputs(report: dict[str, Any], json_path: Path) -> None:
    json_path.with_suffix(".md").write_text(render(report))
    tags = {r["tag"] for r in report["runs"]}
    main = next((t for t in MAIN_TAGS if t in tags), None)
    if main is not None:
        plot(report, main, json_path.with_suffix(".png"))
