"""Hyperparameter search on CPU: `lora-adapt sweep` against the shipped task recipe's settings, on a
reduced (~500-row) training set of a real dataset, with the real MiniLM-L6.

    python benchmarks/sweep_bench.py --dataset sms_spam --threads 1 --work /tmp/sweep-bench   # 20 trials, 200 validation rows
    python benchmarks/sweep_bench.py --render            # rewrite the .md from the saved .json

Arms, all on the same rows (a seeded sample of the shipped recipe's own training split, a seeded sample
of its validation split, and its whole test split; test and validation rows whose label the training
sample lacks are left out and counted):

- ``shipped``: recipes/tasks/<dataset>.yaml as written (as on main when run), with the baselines
  majority, TF-IDF + logistic regression and full fine-tuning (all parameters, same data and epochs,
  learning rate 0.1x);
- ``bayes``: a TPE sweep with median pruning over learning rate, epochs (2-8, with
  ``training.min_steps: 0`` so that a trial trains the epochs it draws), rank, alpha/rank and
  dropout, evaluating every 16 steps;
- ``bayes_noprune``: the same sweep without pruning (the optimizer steps pruning saves);
- ``random``: the same space, random sampling, median pruning;
- ``grid``: a 20-point grid (5 learning rates x 2, 4, 6 or 8 epochs, the recipe's rank, alpha and
  dropout), median pruning;
- ``bayes_recipe``: the sweep as a user would run it on the shipped recipe: its own values as the first
  trial (``sweep.include_recipe``), its ``min_steps`` and evaluation schedule as written (so the epochs
  are not searched: ``min_steps: auto`` gives every trial on ~500 rows the same steps), TPE over learning
  rate, rank, alpha/rank and dropout, median pruning;
- ``full_finetune``: full fine-tuning on the shipped arm's rows and budget (`lora-adapt eval SHIPPED_RUN
  --baseline full_finetune`), for a shipped arm run with ``--shipped-baselines`` that left it out.

Every sweep chooses on the validation split; the test split is scored once, for each sweep's best trial.
Each arm is cached in the work folder (an interrupted arm's sweep resumes). Results:
benchmarks/results/sweep_cpu.json and sweep_cpu.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
RECIPES = REPO / "recipes" / "tasks"  # --recipes: read the shipped recipes from another checkout (main)
ARMS = ("shipped", "bayes", "bayes_noprune", "random", "grid", "bayes_recipe", "full_finetune")
SPACE: dict[str, Any] = {
    "training.learning_rate": {"low": 2.0e-4, "high": 5.0e-3, "log": True},
    "training.epochs": {"low": 2, "high": 8},
    "adapter.rank": {"values": [4, 8, 16]},
    "adapter.alpha": {"values": [1, 2, 4], "relative_to": "adapter.rank"},
    "adapter.dropout": {"values": [0.0, 0.1, 0.2]},
}
GRID: dict[str, Any] = {
    "training.learning_rate": {"values": [3.0e-4, 6.0e-4, 1.2e-3, 2.4e-3, 4.8e-3]},
    "training.epochs": {"values": [2, 4, 6, 8]},
}
"""20 points, the budget of the other arms: learning rates doubling across the bayes space's range, its
epochs; rank, alpha and dropout as the recipe gives them."""
TRIAL_SETTINGS = {"min_steps": 0}
"""Trials train exactly the epochs they draw: the shipped `training.min_steps: auto` would raise every
trial on ~500 rows to 300 steps (10 epochs) and make the epochs dimension meaningless. The shipped arm
keeps it, as written."""
INCLUDE_RECIPE = False
"""The arms were measured before a sweep tried the recipe's own values as its first trial
(`sweep.include_recipe`, on by default since): off here, so that the recorded arms reproduce; the
shipped arm is the comparison with the recipe's values."""
PRUNING = {"method": "median", "startup_trials": 3, "warmup_evaluations": 1}
EVAL_STEPS = 16
"""Sweep arms evaluate every 16 optimizer steps (half an epoch of 500 rows at batch 16), so trials are
compared at the same step whatever their epochs; the shipped arm evaluates once per epoch, as written."""


def slice_rows(dataset: str, rows: int, val_rows: int, folder: Path) -> dict[str, Any]:
    """Write seeded samples of the shipped recipe's prepared splits as JSONL; return counts and notes."""
    from lora_adapt.data import load_split_rows
    from lora_adapt.recipe import load_recipe

    recipe = load_recipe(RECIPES / f"{dataset}.yaml")
    splits, _ = load_split_rows(recipe.data, recipe.task)
    rng = random.Random(recipe.data.split.seed)
    train = rng.sample(splits["train"], min(rows, len(splits["train"])))
    validation = rng.sample(splits["validation"], min(val_rows, len(splits["validation"])))
    known = {row["label"] for row in train}
    kept = {"train": train}
    notes = []
    for split, chosen in (("validation", validation), ("test", splits["test"])):
        kept[split] = [row for row in chosen if row["label"] in known]
        if len(kept[split]) < len(chosen):
            notes.append(
                f"{len(chosen) - len(kept[split])} of {len(chosen)} {split} rows left out: their label is "
                "not in the training sample"
            )
    folder.mkdir(parents=True, exist_ok=True)
    for split, chosen in kept.items():
        (folder / f"{split}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chosen)
        )
    return {
        "rows": {split: len(chosen) for split, chosen in kept.items()},
        "of": {split: len(splits[split]) for split in ("train", "validation", "test")},
        "notes": notes,
    }


def base_recipe(dataset: str, data: Path, out: Path, name: str):
    """The shipped recipe on the sliced rows (everything else as written)."""
    from lora_adapt.recipe import load_recipe

    return load_recipe(
        RECIPES / f"{dataset}.yaml",
        [
            "data.path=null",
            "data.column_names=null",
            "data.file_format=jsonl",
            f"data.train={data / 'train.jsonl'}",
            f"data.validation={data / 'validation.jsonl'}",
            f"data.test={data / 'test.jsonl'}",
            f"output.dir={out}",
            f"name={name}",
            "training.progress_bar=false",
        ],
    )


def run_shipped(
    dataset: str, data: Path, out: Path, echo, baselines=("majority", "tfidf_logreg", "full_finetune")
) -> dict[str, Any]:
    from lora_adapt.pipeline import run

    recipe = base_recipe(dataset, data, out, f"{dataset}-shipped")
    recipe = recipe.model_copy(
        update={"evaluation": recipe.evaluation.model_copy(update={"baselines": tuple(baselines)})}
    )
    start = time.perf_counter()
    result = run(recipe, overwrite=True, echo=echo)
    metrics = result.metrics
    key = metrics["evaluation"]["headline"]
    return {
        "arm": "shipped",
        "wall_s": round(time.perf_counter() - start, 1),
        "metric": key,
        "settings": {
            "learning_rate": recipe.training.learning_rate,
            "epochs": recipe.training.epochs,
            "rank": recipe.adapter.rank,
            "alpha": recipe.adapter.alpha,
            "dropout": recipe.adapter.dropout,
        },
        "steps": metrics["train"]["global_step"],
        "validation": validation_score(result.run_dir, data, key),
        "run_dir": str(result.run_dir),
        "test": metrics["task"][key],
        "full_finetune_test": (metrics["baselines"].get("full_finetune") or {}).get(key),
        "full_finetune": {
            k: v
            for k, v in (metrics["baselines"].get("full_finetune") or {}).items()
            if k in ("learning_rate", "steps", "train_s")
        },
        "tfidf_logreg_test": (metrics["baselines"].get("tfidf_logreg") or {}).get(key),
        "majority_test": (metrics["baselines"].get("majority") or {}).get(key),
    }


def run_full_finetune(work: Path, echo) -> dict[str, Any]:
    """Full fine-tuning on the shipped arm's rows and budget, scored on its test rows (`lora-adapt eval
    SHIPPED_RUN --baseline full_finetune`): the arm to run when the shipped arm left it out."""
    from lora_adapt.rescore import evaluate_run

    shipped = json.loads((work / "shipped.json").read_text())
    start = time.perf_counter()
    scored = evaluate_run(
        Path(shipped["run_dir"]),
        data_file=None,
        split="test",
        baselines=("full_finetune",),
        max_samples=None,
        echo=echo,
    )
    full = scored["baselines"]["full_finetune"]
    return {
        "arm": "full_finetune",
        "wall_s": round(time.perf_counter() - start, 1),
        "metric": shipped["metric"],
        "test": full.get(shipped["metric"]),
        "adapter_test_rescored": (scored.get("task") or {}).get(shipped["metric"]),
        "full_finetune": {k: v for k, v in full.items() if k in ("learning_rate", "steps", "train_s")},
    }


def validation_score(run_dir: Path, data: Path, key: str) -> float | None:
    """The finished run's adapter scored on the bench's validation rows (what the sweeps choose on)."""
    from lora_adapt.rescore import evaluate_run

    scored = evaluate_run(
        run_dir,
        data_file=data / "validation.jsonl",
        split="validation",
        baselines=(),
        max_samples=None,
        echo=lambda line: None,
    )
    return (scored.get("task") or {}).get(key)


def run_arm(arm: str, dataset: str, data: Path, out: Path, trials: int, echo) -> dict[str, Any]:
    from lora_adapt.recipe import recipe_from_dict
    from lora_adapt.recipe.trials import recipe_values
    from lora_adapt.sweep import run_sweep

    raw = recipe_values(base_recipe(dataset, data, out, f"{dataset}-{arm}"))
    as_written = arm == "bayes_recipe"
    if not as_written:
        raw["training"]["eval_steps"] = EVAL_STEPS
        raw["training"].update(TRIAL_SETTINGS)
    space = GRID if arm == "grid" else SPACE
    if as_written:
        space = {k: v for k, v in SPACE.items() if k != "training.epochs"}
    raw["sweep"] = {
        "method": "grid" if arm == "grid" else "random" if arm == "random" else "bayes",
        "space": space,
        "budget": {"trials": trials},
        "pruning": {"method": "none"} if arm == "bayes_noprune" else PRUNING,
        "seed": 42,
        "include_recipe": as_written or INCLUDE_RECIPE,
        "dir": str(out / f"{dataset}-{arm}-sweep"),
    }
    recipe = recipe_from_dict(raw)
    start = time.perf_counter()
    summary = run_sweep(recipe, echo=echo).summary
    best = summary.get("best") or {}
    metric = summary["objective"]["metric"]
    return {
        "arm": arm,
        "wall_s": round(time.perf_counter() - start, 1),
        "metric": metric,
        "trials": summary["counts"],
        "steps_total": summary["cost"]["steps_total"],
        "before_first_step": {k: v for k, v in summary["cost"].items() if k.startswith("before")},
        "best_trial": best.get("trial"),
        "best_values": best.get("values"),
        "validation": best.get("validation"),
        "test": (best.get("test") or {}).get(metric),
        "space": raw["sweep"]["space"],
        "recipe_trial": summary.get("recipe_trial"),
        "pruning": raw["sweep"]["pruning"]["method"],
        "folder": str(out / f"{dataset}-{arm}-sweep"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("sms_spam", "semeval2010_re"))
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--val-rows", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/sweep-bench"))
    parser.add_argument("--out", type=Path, default=RESULTS / "sweep_cpu")
    parser.add_argument("--render", action="store_true")
    parser.add_argument(
        "--shipped-baselines",
        default="majority,tfidf_logreg,full_finetune",
        help="baselines of the shipped arm (full fine-tuning costs about two LoRA runs)",
    )
    parser.add_argument("--recipes", type=Path, default=RECIPES, help="folder of the shipped task recipes")
    args = parser.parse_args(argv)
    globals()["RECIPES"] = args.recipes.resolve()
    if args.render:
        write(args.out, json.loads(args.out.with_suffix(".json").read_text()))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    work = args.work / args.dataset
    data = work / "data"
    sliced = slice_rows(args.dataset, args.rows, args.val_rows, data)
    log = work / "bench.log"

    def echo(line: str) -> None:
        with log.open("a") as f:
            f.write(line + "\n")

    results = {}
    for arm in args.arms.split(","):
        cached = work / f"{arm}.json"
        if not cached.is_file():
            echo(f"=== {arm} ({time.strftime('%H:%M:%S')})")
            if arm == "shipped":
                result = run_shipped(
                    args.dataset, data, work / "runs", echo, args.shipped_baselines.split(",")
                )
            elif arm == "full_finetune":
                result = run_full_finetune(work, echo)
            else:
                result = run_arm(arm, args.dataset, data, work / "runs", args.trials, echo)
            cached.write_text(json.dumps(result, indent=2))
        results[arm] = json.loads(cached.read_text())
    for result in results.values():
        result.setdefault("steps_to_the_end", steps_to_the_end(result))
    paired = paired_pruning(work / "runs", args.dataset)
    report_path = args.out.with_suffix(".json")
    report = json.loads(report_path.read_text()) if report_path.is_file() else {"datasets": {}}
    report["datasets"][args.dataset] = {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "recipes": str(RECIPES),
        "recipes_commit": _git(RECIPES, "rev-parse", "HEAD"),
        "branch_commit": _git(REPO, "rev-parse", "HEAD"),
        "machine": f"{platform.machine()}, {args.threads} torch thread(s) on 2 shared CPU cores",
        "date": time.strftime("%Y-%m-%d"),
        "data": sliced,
        "arms": results,
        **({"paired_pruning": paired} if paired else {}),
    }
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    write(args.out, report)
    return 0


def paired_pruning(folder: Path, dataset: str) -> dict[str, Any] | None:
    """The pruning mark on the trials both bayes arms ran with the same settings: the arms share the sampler
    seed, so they draw the same trials until pruning changes what TPE has seen; over that common prefix the
    unpruned arm's study gives what each pruned trial would have scored had it run to the end. Read from the
    two arms' Optuna studies (finished or not)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = {}
    for arm in ("bayes", "bayes_noprune"):
        db = folder / f"{dataset}-{arm}-sweep" / "study.db"
        if not db.is_file():
            return None
        studies[arm] = optuna.load_study(study_name=None, storage=f"sqlite:///{db}")
    done = {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    pruned, whole = (sorted(studies[a].trials, key=lambda t: t.number) for a in ("bayes", "bayes_noprune"))
    pairs = []
    for a, b in zip(pruned, whole, strict=False):
        if a.params != b.params or a.state not in done or b.state != optuna.trial.TrialState.COMPLETE:
            break
        pairs.append((a, b))
    if not pairs:
        return None
    steps = [sum(int(t.user_attrs["cost"]["steps"]) for t in side) for side in zip(*pairs, strict=True)]
    kept = [a.value for a, _ in pairs if a.state == optuna.trial.TrialState.COMPLETE]
    return {
        "trials": len(pairs),
        "pruned": sum(a.state == optuna.trial.TrialState.PRUNED for a, _ in pairs),
        "steps_pruned_arm": steps[0],
        "steps_unpruned_arm": steps[1],
        "best_validation_pruned_arm": max(kept) if kept else None,
        "best_validation_unpruned_arm": max(b.value for _, b in pairs),
        "unpruned_arm_trials_so_far": sum(t.state == optuna.trial.TrialState.COMPLETE for t in whole),
    }


def steps_to_the_end(arm: dict[str, Any]) -> int | None:
    """The optimizer steps the arm's trials would have run with none pruned: a pruned trial counts the
    steps its drawn epochs give (steps per epoch read off the completed trials), the others what they ran."""
    table = Path(arm.get("folder", "")) / "trials.csv"
    if not table.is_file():
        return None
    import csv

    rows = list(csv.DictReader(table.open()))
    complete = [r for r in rows if r["state"] == "COMPLETE" and float(r.get("training.epochs") or 1) > 0]
    if not complete:
        return None

    def planned(row: dict[str, str]) -> float:
        """A trial's steps had it run to its end: its drawn epochs at the completed trials' steps per epoch
        (every trial the same steps where the epochs are not searched: bayes_recipe)."""
        if "training.epochs" not in row:
            return int(complete[0]["steps"])
        return (
            int(complete[0]["steps"]) / float(complete[0]["training.epochs"]) * float(row["training.epochs"])
        )

    return round(
        sum(
            planned(r) if r["state"] == "PRUNED" else int(r["steps"] or 0)
            for r in rows
            if r["state"] in ("COMPLETE", "PRUNED", "FAIL")
        )
    )


def _git(folder: Path, *args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def write(out: Path, report: dict[str, Any]) -> None:
    lines = [
        "# Hyperparameter search on CPU: `lora-adapt sweep` vs the shipped settings (MiniLM-L6, ~500 training rows)",
        "",
        "Every number below comes from the command under its dataset; the JSON beside this file has them all.",
        "",
    ]
    for dataset, d in report["datasets"].items():
        lines += _dataset(dataset, d)
    out.with_suffix(".md").write_text("\n".join(lines).rstrip() + "\n")


def _dataset(dataset: str, d: dict[str, Any]) -> list[str]:
    arms = d["arms"]
    shipped = arms.get("shipped", {})
    metric = shipped.get("metric") or next(iter(arms.values())).get("metric")
    rows = d["data"]["rows"]
    lines = [
        f"## {dataset}",
        "",
        f"Command: `{d['command']}` (shipped recipe from `{d.get('recipes')}` at commit "
        f"`{(d.get('recipes_commit') or '?')[:10]}`, code at `{(d.get('branch_commit') or '?')[:10]}`); "
        f"{d['machine']}; {d['date']}.",
        *(
            f"Also: `{c['command']}` (code at `{c['branch_commit'][:10]}`; {c['date']}): arms {', '.join(c['arms'])}."
            for c in d.get("more_commands", [])
        ),
        f"Rows: train {rows['train']} (of {d['data']['of']['train']}), validation {rows['validation']} "
        f"(of {d['data']['of']['validation']}), test {rows['test']} (of {d['data']['of']['test']}). "
        + " ".join(f"{n}." for n in d["data"]["notes"]),
        "",
        f"| arm | trials (complete / pruned / failed) | optimizer steps | best validation {metric} | test {metric} | wall (s) | best values |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, a in arms.items():
        if name == "full_finetune":
            continue
        if name == "shipped":
            lines.append(
                f"| shipped settings | 1 run | {a['steps']} | {_f(a['validation'])} | {_f(a['test'])} | "
                f"{a['wall_s']} (incl. baselines) | {json.dumps(a['settings'])} |"
            )
            continue
        t = a["trials"]
        lines.append(
            f"| {name} ({a['pruning']} pruning) | {t.get('COMPLETE', 0)} / {t.get('PRUNED', 0)} / {t.get('FAIL', 0)} | "
            f"{a['steps_total']} | {_f(a['validation'])} | {_f(a['test'])} | {a['wall_s']} | "
            f"{json.dumps(a['best_values'])} |"
        )
    if shipped:
        lines += [
            "",
            "The shipped row's values are the recipe's as written; its `training.min_steps: auto` may raise "
            "the epochs (see its optimizer steps). Trials train the epochs they draw (`min_steps: 0`)"
            + (
                "; bayes_recipe's keep the recipe's `min_steps` and evaluations and do not search the epochs."
                if "bayes_recipe" in arms
                else "."
            ),
        ]
        full_test, full_info, full_where = shipped.get("full_finetune_test"), shipped.get("full_finetune"), ""
        if full_test is None and "full_finetune" in arms:
            full_test, full_info = arms["full_finetune"]["test"], arms["full_finetune"]["full_finetune"]
            full_where = f"; arm full_finetune, {arms['full_finetune']['wall_s']} s"
        lines += [
            "",
            f"Shipped settings' baselines on the same test rows: full fine-tuning {_f(full_test)} "
            f"({json.dumps(full_info)}{full_where}), TF-IDF + LR {_f(shipped.get('tfidf_logreg_test'))}, "
            f"majority {_f(shipped.get('majority_test'))}.",
        ]
    lines += ["", *_marks(arms), *_paired(d.get("paired_pruning")), ""]
    return lines


def _paired(p: dict[str, Any] | None) -> list[str]:
    if not p:
        return []
    saved = 1 - p["steps_pruned_arm"] / p["steps_unpruned_arm"]
    equal = p["best_validation_pruned_arm"] is not None and (
        p["best_validation_pruned_arm"] >= p["best_validation_unpruned_arm"] - 1e-4
    )
    return [
        f"- pruning, paired: the first {p['trials']} trials drew the same settings in both bayes arms (then TPE, "
        f"having seen pruned trials, drew otherwise); pruning stopped {p['pruned']} of them and ran "
        f"{p['steps_pruned_arm']} optimizer steps against {p['steps_unpruned_arm']} ({100 * saved:.0f}% saved); "
        f"best validation {_f(p['best_validation_pruned_arm'])} vs {_f(p['best_validation_unpruned_arm'])} with "
        f"every trial run to its end: {'met' if saved >= 0.4 and equal else 'missed'} (>= 40% saved at an equal "
        f"best validation score; the unpruned arm had finished {p['unpruned_arm_trials_so_far']} trials)"
    ]


def _marks(arms: dict[str, Any]) -> list[str]:
    out = ["Marks:"]
    shipped, bayes, noprune = arms.get("shipped"), arms.get("bayes"), arms.get("bayes_noprune")
    if shipped and bayes and bayes.get("test") is not None:
        full = shipped.get("full_finetune_test")
        if full is None and "full_finetune" in arms:
            full = arms["full_finetune"]["test"]
        versus_full = (
            "vs full fine-tuning: not measured (neither a shipped baseline nor the full_finetune arm)"
            if full is None
            else f"vs full fine-tuning {_f(full)} ({100 * (bayes['test'] - full):+.2f} points): "
            f"{'met' if bayes['test'] >= full - 0.01 else 'missed'} (within 1 point)"
        )
        out.append(
            f"- best trial's test {_f(bayes['test'])} vs shipped {_f(shipped['test'])}: "
            f"{'met' if bayes['test'] >= shipped['test'] else 'missed'}; {versus_full}"
        )
    searched = {
        n: arms[n] for n in ("bayes", "random", "grid") if n in arms and arms[n].get("test") is not None
    }
    if len(searched) > 1:
        out.append(
            "- the same budget, three samplers (best trial by validation; its test): "
            + "; ".join(f"{n} {_f(a['validation'])} / {_f(a['test'])}" for n, a in searched.items())
        )
    own = arms.get("bayes_recipe")
    if shipped and own and own.get("test") is not None:
        first = own.get("recipe_trial") or {}
        out.append(
            f"- bayes_recipe (the recipe's own values as trial {first.get('trial')}, validation "
            f"{_f(first.get('validation'))}): best trial {own.get('best_trial')}, validation {_f(own['validation'])}, "
            f"test {_f(own['test'])} vs shipped {_f(shipped['test'])}: "
            f"{'met' if own['test'] >= shipped['test'] else 'missed'}"
        )
    if bayes and bayes.get("steps_to_the_end"):
        whole = bayes["steps_to_the_end"]
        out.append(
            f"- pruning, the same trials: {bayes['steps_total']} optimizer steps run against {whole} had no "
            f"trial been pruned ({100 * (1 - bayes['steps_total'] / whole):.0f}% saved; the pruned trials' "
            "final scores are unknown)"
        )
    if bayes and noprune:
        saved = 1 - bayes["steps_total"] / noprune["steps_total"] if noprune["steps_total"] else None
        out.append(
            f"- pruning: {bayes['steps_total']} vs {noprune['steps_total']} optimizer steps "
            f"({'n/a' if saved is None else f'{100 * saved:.0f}% saved'}); best validation {_f(bayes['validation'])} "
            f"vs {_f(noprune['validation'])}: {'met' if saved is not None and saved >= 0.4 and bayes['validation'] >= noprune['validation'] else 'missed'} "
            "(>= 40% saved at an equal best validation score)"
        )
    return out


def _f(value: Any) -> str:
    return "–" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    sys.exit(main())
