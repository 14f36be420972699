"""Sample efficiency on CPU: score against training rows, LoRA vs full fine-tuning vs baselines (MiniLM-L6).

    python benchmarks/sample_efficiency.py --sizes 250,500 --seeds 3 --tag shipped      # the cheap slices
    python benchmarks/sample_efficiency.py --sizes 1000,2000 --seeds 1 --tag shipped    # one seed above
    python benchmarks/sample_efficiency.py --render                                     # .md and .png from the .json

Each run is one `lora-adapt run` of recipes/tasks/<dataset>.yaml through the normal pipeline with
`data.max_train_samples=N` (a seeded sample of the training split, stratified by label for
classification and relations; validation and test stay whole) and, for seed s, `data.sample_seed=s`
and `training.seed=s`: another sample and another initialisation, the same validation and test
rows. Systems: the adapter (LoRA, the recipe as shipped), and the baselines full fine-tuning, TF-IDF
+ logistic regression, the frozen-MiniLM linear probe and majority class (`--baselines`).

`--tag NAME --set KEY=VALUE ...` records an ablation under its own name (one change at a time);
runs already in the results file under the same tag, dataset, size and seed are skipped, so an
interrupted sweep resumes. Two sweeps may run side by side with different `--out` files and be
merged with `--combine`. Needs ../shared/data.

Writes benchmarks/results/sample_efficiency.{json,md,png}; the table and plot come from
benchmarks/sample_efficiency_report.py.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DATASETS = ("sms_spam", "banking77", "conll2003_ner", "semeval2010_re")
BASELINES = ("majority", "tfidf_logreg", "base_model", "full_finetune")
# No validation pass during training: none of the task recipes early-stops, so the per-epoch validation
# scores only fill the log (the trained model is the same), and on the whole validation split they cost
# more CPU than training a few hundred rows (CoNLL: 3,250 sentences per epoch). The baselines still pick
# their regularisation on the validation split.
NO_EVAL_DURING_TRAINING = "training.eval_steps=1000000"
SLIM_DROP = ("per_class", "per_relation_official", "confusion_matrix", "constrained")


def run_one(
    dataset: str,
    rows: int,
    seed: int,
    tag: str,
    extra: list[str],
    baselines: list[str],
    data_root: Path | None,
) -> dict[str, Any]:
    from lora_adapt.pipeline import run
    from lora_adapt.recipe import load_recipe

    path = REPO / "recipes" / "tasks" / f"{dataset}.yaml"
    overrides = [
        f"data.max_train_samples={rows}",
        f"data.sample_seed={seed}",
        f"training.seed={seed}",
        f"evaluation.baselines=[{','.join(baselines)}]",
        NO_EVAL_DURING_TRAINING,
        *extra,
    ]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"sample-eff-{dataset}-") as out:
        moved = data_root_overrides(load_recipe(path), data_root)
        recipe = load_recipe(path, [*overrides, *moved, f"output.dir={out}"])
        result = run(recipe, overwrite=True, echo=lambda s: print(s, flush=True))
    metrics = result.metrics
    return {
        "tag": tag,
        "dataset": dataset,
        "rows": rows,
        "seed": seed,
        "overrides": overrides,
        "wall_s": round(time.perf_counter() - start, 1),
        "headline": metrics["evaluation"]["headline"],
        "train_rows": result.manifest["data"]["rows"].get("train"),
        "validation_rows": result.manifest["data"]["rows"].get("validation"),
        "test_rows": metrics["evaluation"]["rows"],
        "train": {k: v for k, v in metrics["train"].items() if k != "history"},
        "eval_history": [h for h in metrics["train"].get("history", []) if "eval_loss" in h],
        "systems": {"lora": _slim(metrics["task"])} | {k: _slim(v) for k, v in metrics["baselines"].items()},
        "health": metrics.get("health"),
        "label_counts": (result.manifest["data"]["stats"].get("label_counts") or {}).get("train"),
    }


def data_root_overrides(recipe, root: Path | None) -> list[str]:
    """--set overrides that move the recipe's data files from `.../shared/data/` to ``root`` (a worktree
    whose ../shared/data is elsewhere)."""
    if root is None:
        return []
    moved = []
    for name in ("path", "train", "validation", "test"):
        value = getattr(recipe.data, name)
        if value is not None and "shared/data/" in value.as_posix():
            moved.append(f"data.{name}={root / value.as_posix().split('shared/data/', 1)[1]}")
    return moved


def _slim(metrics: dict[str, Any]) -> dict[str, Any]:
    slim = {k: v for k, v in metrics.items() if k not in SLIM_DROP}
    per_class = metrics.get("per_class") or {}
    slim["predicted"] = {label: row.get("predicted") for label, row in per_class.items()}
    return slim


def key(record: dict[str, Any]) -> tuple:
    return (record["tag"], record["dataset"], record["rows"], record["seed"])


def load(path: Path) -> dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text())
    return {"commands": [], "runs": []}


def save(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(path)


def sweep(args: argparse.Namespace, json_path: Path) -> dict[str, Any]:
    import torch

    from lora_adapt.manifest import package_versions

    torch.set_num_threads(args.threads)
    report = load(json_path)
    command = "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0])), *sys.argv[1:]])
    report["commands"] = [*report.get("commands", []), command]
    report["machine"] = f"{platform.machine()}, torch threads {torch.get_num_threads()}"
    report["versions"] = package_versions()
    done = {key(r) for r in report["runs"]}
    baselines = [b for b in args.baselines.split(",") if b]
    for dataset in args.datasets.split(","):
        for rows in (int(n) for n in args.sizes.split(",")):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                if (args.tag, dataset, rows, seed) in done:
                    continue
                print(f"=== {args.tag} {dataset} rows={rows} seed={seed}", flush=True)
                record = run_one(dataset, rows, seed, args.tag, args.extra, baselines, args.data_root)
                record["date"] = time.strftime("%Y-%m-%d %H:%M")
                report["runs"].append(record)
                save(report, json_path)
    return report


def combine(parts: list[Path], json_path: Path) -> dict[str, Any]:
    """Merge other results files into ``json_path``'s. A run already there (same tag, dataset, size and seed:
    the same training sample) keeps its own systems and gains those it lacks from the other run (a baseline
    measured later, e.g. full fine-tuning), recorded in the run, but only when the other run's adapter scored
    exactly the same (the evidence that it trained on the same sample with the same code); otherwise it is
    left out, and said so."""
    report = load(json_path)
    seen = {key(r): r for r in report["runs"]}
    for part in parts:
        other = load(part)
        report["commands"] += [c for c in other.get("commands", []) if c not in report["commands"]]
        for name in ("machine", "versions"):
            report.setdefault(name, other.get(name))
        for run in other["runs"]:
            kept = seen.get(key(run))
            if kept is None:
                report["runs"].append(run)
                seen[key(run)] = run
                continue
            added = {k: v for k, v in run["systems"].items() if k not in kept["systems"]}
            there, mine = (r["systems"]["lora"].get(kept["headline"]) for r in (run, kept))
            if added and there != mine:  # not the same training: its baselines may not be the same sample
                print(f"not merged: {key(run)} in {part}: LoRA {there} there, {mine} here", file=sys.stderr)
                continue
            if added:
                kept["systems"].update(added)
                headline = kept["headline"]
                kept.setdefault("added_systems", []).append(
                    {
                        "systems": sorted(added),
                        "date": run.get("date"),
                        "wall_s": run.get("wall_s"),
                        "overrides": run.get("overrides"),
                        "lora_there": run["systems"]["lora"].get(headline),
                        "lora_kept": kept["systems"]["lora"].get(headline),
                    }
                )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--sizes", default="250,500", help="training rows per run, comma-separated")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per size (first-seed, first-seed+1, ...)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--tag", default="shipped", help="name the runs are recorded under")
    parser.add_argument("--baselines", default=",".join(BASELINES))
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None if (REPO.parent / "shared" / "data").is_dir() else REPO.parents[1] / "shared" / "data",
        help="where ../shared/data is, when not next to this checkout (e.g. from a git worktree)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "sample_efficiency.json")
    parser.add_argument("--render", action="store_true", help="only write the .md and .png from the .json")
    parser.add_argument(
        "--combine", type=Path, nargs="+", metavar="JSON", help="merge these results into --out"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sample_efficiency_report import write_outputs

    if args.combine:
        report = combine(args.combine, args.out)
        save(report, args.out)
    elif not args.render:
        report = sweep(args, args.out)
    write_outputs(load(args.out), args.out)


if __name__ == "__main__":
    main()
