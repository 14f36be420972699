"""How many training rows per domain does the TF-IDF router need? (issue 11's routing mark, >= 0.98)

    python benchmarks/router_rows.py --work /tmp/domains-bench      # the runs domains_train.py wrote

For each cap on the rows per domain (a seeded sample of each adapter's own training + validation texts, as
`route build --max-rows-per-domain` takes them), fits the router's TF-IDF + logistic regression
(`domains.router.TfidfClassifier`: the pipeline's features and C grid, C chosen on a seeded 10% of the
rows) and routes each domain's own test split to its top domain (no threshold). The LoRA router is not
retrained here (`route build` does that; too slow for a sweep of sizes on a CPU).
Writes benchmarks/results/router_rows.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DOMAINS = ("tickets", "sms", "bank")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--caps", default="150,500,1000,all")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    from lora_adapt.domains.route_build import domain_rows
    from lora_adapt.domains.router import TfidfClassifier
    from lora_adapt.modeling import resolve_adapter

    texts = {n: domain_rows(resolve_adapter(args.work / "runs" / n, name=n)) for n in DOMAINS}
    report = {
        "command": " ".join(["python", *sys.argv]),
        "rows": {n: {k: len(v) for k, v in t.items()} for n, t in texts.items()},
        "caps": [],
    }
    for cap_text in args.caps.split(","):
        cap = None if cap_text == "all" else int(cap_text)
        train, validation = [], []
        for name, splits in texts.items():
            own = [*splits.get("train", []), *splits.get("validation", [])]
            rng = random.Random(args.seed)
            if cap is not None and len(own) > cap:
                own = rng.sample(own, cap)
            rng.shuffle(own)
            held = max(1, len(own) // 10)
            validation += [{"text": t, "label": name} for t in own[:held]]
            train += [{"text": t, "label": name} for t in own[held:]]
        start = time.perf_counter()
        router = TfidfClassifier.fit(train, validation)
        entry = {"cap": cap_text, "train_rows": len(train), "c": router.c, "domains": {}}
        right = total = 0
        for name, splits in texts.items():
            probs = router.probabilities(splits["test"])
            hits = sum(max(p, key=p.__getitem__) == name for p in probs)
            entry["domains"][name] = {"rows": len(probs), "accuracy": round(hits / len(probs), 4)}
            right, total = right + hits, total + len(probs)
        entry["all"] = round(right / total, 4)
        entry["seconds"] = round(time.perf_counter() - start, 1)
        report["caps"].append(entry)
        print(json.dumps(entry), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "router_rows.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# TF-IDF router accuracy against training rows per domain",
        "",
        f"Command: `{report['command']}`. Rows per adapter run: {report['rows']}.",
        "Each domain's own test split, routed to the top domain (no threshold). Mark: >= 0.98.",
        "",
        "| rows per domain (cap) | router training rows | C | " + " | ".join(DOMAINS) + " | all |",
        "|---|---|---|" + "---|" * len(DOMAINS) + "---|",
    ]
    for e in report["caps"]:
        cells = " | ".join(f"{e['domains'][n]['accuracy']:.4f}" for n in DOMAINS)
        lines.append(f"| {e['cap']} | {e['train_rows']} | {e['c']:g} | {cells} | {e['all']:.4f} |")
    (RESULTS / "router_rows.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
