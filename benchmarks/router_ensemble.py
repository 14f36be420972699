"""Would averaging the router candidates route each domain better? (issue 11's routing mark, >= 0.98)

    python benchmarks/router_ensemble.py --router /tmp/db/router-all --runs /tmp/db/runs

For a router built by `lora-adapt route build` over the runs of `benchmarks/domains_train.py` (tickets,
sms, bank), refits its two baselines exactly as `route build` would keep them (TF-IDF + logistic
regression, and the frozen-encoder probe, both on the router run's own train / validation rows), runs the
router's LoRA head, and routes each domain's own test split with every candidate and every average of
their probabilities (equal weights). Nothing here is chosen on the test splits: the table only says
whether an ensemble candidate would be worth building. Writes benchmarks/results/router_ensemble.{json,md}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DOMAINS = ("tickets", "sms", "bank")
CANDIDATES = ("lora", "tfidf_logreg", "frozen_probe")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--router", type=Path, required=True)
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    from lora_adapt.data import load_split_rows
    from lora_adapt.domains.adapter_set import AdapterSet
    from lora_adapt.domains.route_build import domain_rows
    from lora_adapt.domains.router import ROUTER_NAME, ProbeClassifier, TfidfClassifier, probe_features
    from lora_adapt.modeling import resolve_adapter
    from lora_adapt.rundir import read_run

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    recipe = read_run(args.router).recipe
    splits, _ = load_split_rows(recipe.data, recipe.task)
    tests = {n: domain_rows(resolve_adapter(args.runs / n, name=n))["test"] for n in DOMAINS}
    aset = AdapterSet.load({ROUTER_NAME: args.router})
    tfidf = TfidfClassifier.fit(splits["train"], splits["validation"])
    probe = ProbeClassifier.fit(
        probe_features(aset, [r["text"] for r in splits["train"]]),
        [r["label"] for r in splits["train"]],
        probe_features(aset, [r["text"] for r in splits["validation"]]),
        [r["label"] for r in splits["validation"]],
    )
    probs: dict[str, dict[str, list[dict[str, float]]]] = {}
    for name, texts in tests.items():
        head = [
            r["probabilities"]
            for s in range(0, len(texts), 64)
            for r in aset.run([(ROUTER_NAME, t or " ") for t in texts[s : s + 64]], top_k=0)
        ]
        probs[name] = {
            "lora": head,
            "tfidf_logreg": tfidf.probabilities(texts),
            "frozen_probe": probe.probabilities_of(probe_features(aset, texts)),
        }
    rows = []
    for size in range(1, len(CANDIDATES) + 1):
        for combo in itertools.combinations(CANDIDATES, size):
            rows.append({"candidates": list(combo), **routed_right(probs, combo)})
    report = {
        "command": " ".join(["python", *sys.argv]),
        "router": str(args.router),
        "test_rows": {n: len(t) for n, t in tests.items()},
        "seconds": round(time.perf_counter() - start, 1),
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "router_ensemble.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Router candidates and their averages on each domain's own test split",
        "",
        f"Command: `{report['command']}` ({report['seconds']} s). Test rows: {report['test_rows']}. Routed to the "
        "top domain (no threshold). Mark: >= 0.98.",
        "",
        "| candidates (probabilities averaged) | " + " | ".join(DOMAINS) + " | all |",
        "|---|" + "---|" * (len(DOMAINS) + 1),
    ]
    for r in rows:
        cells = " | ".join(f"{r[n]:.4f}" for n in (*DOMAINS, "all"))
        lines.append(f"| {' + '.join(r['candidates'])} | {cells} |")
    (RESULTS / "router_ensemble.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def routed_right(probs: dict, combo: tuple[str, ...]) -> dict[str, float]:
    out, right, total = {}, 0, 0
    for name, by in probs.items():
        hits = 0
        for i in range(len(by["lora"])):
            summed: dict[str, float] = {}
            for candidate in combo:
                for label, p in by[candidate][i].items():
                    summed[label] = summed.get(label, 0.0) + p
            hits += max(summed, key=summed.__getitem__) == name
        out[name] = round(hits / len(by["lora"]), 4)
        right, total = right + hits, total + len(by["lora"])
    out["all"] = round(right / total, 4)
    return out


if __name__ == "__main__":
    main()
