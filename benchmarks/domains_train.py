"""Train the three real MiniLM adapters that `domains_bench.py` serves on one base (reduced CPU runs).

    python benchmarks/domains_train.py --work /tmp/domains-bench --threads 1 [--data-root ../shared/data]

- ``tickets``: the quickstart recipe (support tickets, 6 topics) with 3 epochs instead of 5;
- ``sms``: recipes/tasks/sms_spam.yaml on a seeded 600-row training sample (the test split keeps its
  1,115 rows: a seeded 20% of the collection, as the recipe splits it), 2 epochs;
- ``bank``: recipes/tasks/banking77.yaml on a seeded 15-per-intent training sample (1,155 rows) and the
  full 3,080-row test file, 3 epochs.

Baselines: majority and TF-IDF + logistic regression (the frozen probe and full fine-tuning are left out
to save CPU). Samples are written under WORK/data (never into the repository); runs under WORK/runs.

``--quick`` (the GPU bench's `domains` stage, where ../shared/data is absent): three adapters of the same
names trained for a few steps each on the embedded quickstart data (seeds 1-3, no validation, no evaluation). They are fit
only for measuring throughput (mixed batches vs switching), not scores.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"  # --data-root to point elsewhere
BASELINES = "evaluation.baselines=[majority, tfidf_logreg]"


def sms_files(folder: Path, seed: int = 42, train_rows: int = 600) -> list[str]:
    lines = [
        x
        for x in (SHARED / "sms_spam" / "SMSSpamCollection").read_text(encoding="utf-8").splitlines()
        if x.strip()
    ]
    random.Random(seed).shuffle(lines)
    test_rows = round(len(lines) * 0.2)
    test, pool = lines[:test_rows], lines[test_rows:]
    (folder / "sms_train.tsv").write_text("\n".join(pool[:train_rows]) + "\n", encoding="utf-8")
    (folder / "sms_test.tsv").write_text("\n".join(test) + "\n", encoding="utf-8")
    return [
        f"data.train={folder / 'sms_train.tsv'}",
        f"data.test={folder / 'sms_test.tsv'}",
        "data.path=null",
    ]


def bank_files(folder: Path, seed: int = 42, per_intent: int = 15) -> list[str]:
    with (SHARED / "banking77" / "train.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    by_intent: dict[str, list[dict]] = {}
    for row in rows:
        by_intent.setdefault(row["category"], []).append(row)
    rng = random.Random(seed)
    kept = [r for intent in sorted(by_intent) for r in rng.sample(by_intent[intent], per_intent)]
    rng.shuffle(kept)
    with (folder / "bank_train.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "category"])
        writer.writeheader()
        writer.writerows(kept)
    return [f"data.train={folder / 'bank_train.csv'}", f"data.test={SHARED / 'banking77' / 'test.csv'}"]


def plans(data: Path) -> dict[str, tuple[Path, list[str]]]:
    return {
        "tickets": (REPO / "recipes" / "quickstart.yaml", ["training.epochs=3", "name=tickets"]),
        "sms": (
            REPO / "recipes" / "tasks" / "sms_spam.yaml",
            [*sms_files(data), "training.epochs=2", "name=sms"],
        ),
        "bank": (
            REPO / "recipes" / "tasks" / "banking77.yaml",
            [*bank_files(data), "training.epochs=3", "name=bank"],
        ),
    }


def quick_plans(steps: int) -> dict[str, tuple[Path, list[str]]]:
    quickstart = REPO / "lora_adapt" / "examples" / "quickstart.yaml"
    return {
        name: (
            quickstart,
            [
                f"name={name}",
                f"training.max_steps={steps}",
                "training.min_steps=0",
                f"training.seed={seed}",
                # nothing beyond torch, transformers, peft and trl: no scoring (scikit-learn) and no data
                # cache (xxhash), which the lent GPU's image may lack
                "data.split.validation=0",
                "data.cache=false",
                "evaluation.enabled=false",
            ],
        )
        for seed, name in enumerate(("tickets", "sms", "bank"), start=1)
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--data-root", type=Path, default=None, help="the shared datasets folder")
    parser.add_argument("--quick", action="store_true", help="throughput-only adapters (see above)")
    parser.add_argument("--quick-steps", type=int, default=20)
    args = parser.parse_args()
    global SHARED
    SHARED = args.data_root or SHARED
    import torch

    from lora_adapt.pipeline import run
    from lora_adapt.recipe import load_recipe

    torch.set_num_threads(args.threads)
    data = args.work / "data"
    data.mkdir(parents=True, exist_ok=True)
    timings = {}
    todo = quick_plans(args.quick_steps) if args.quick else plans(data)
    for name, (path, overrides) in todo.items():
        if args.only and name not in args.only:
            continue
        baselines = "evaluation.baselines=[]" if args.quick else BASELINES
        recipe = load_recipe(path, [*overrides, baselines, f"output.dir={args.work / 'runs'}"])
        start = time.perf_counter()
        result = run(recipe, overwrite=True, echo=print)
        timings[name] = {
            "wall_s": round(time.perf_counter() - start, 1),
            "overrides": overrides,
            "recipe": str(path.relative_to(REPO)),
        }
        print(f"{name}: {result.metrics.get('summary')} ({timings[name]['wall_s']} s)")
    (args.work / "train_timings.json").write_text(json.dumps(timings, indent=2))


if __name__ == "__main__":
    main()
