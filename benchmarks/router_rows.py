"""How many training rows per domain does the TF-IDF router need? (issue 11's routing mark, >= 0.98)

    python benchmarks/router_rows.py --work /tmp/domains-bench      # the runs domains_train.py wrote

For each cap on the rows per domain (a seeded sample of each adapter's own training + validation texts, as
`route build --max-rows-per-domain` takes them), fits the router's TF-IDF + logistic regression
(`domains.router.TfidfClassifier`: the pipeline's features and C grid, C chosen on a seeded 10% of the
rows) and routes each domain's own test split to its top domain (no threshold). The LoRA router is not
retrained here (`route build` does that; too slow for a sweep of sizes on a CPU).

`--probe` adds a third kind of router on the same rows: the frozen base model's mean-pooled last hidden
states (the adapters' base, adapter off: the evaluation's `base_model` probe) + the same logistic regression
(standardised features, C from the pipeline's grid chosen on the same 10%). A sentence encoder separates
topics that share no words, which TF-IDF cannot; the table says whether that reaches the mark. The report
lists the test rows of each domain that the largest router sent elsewhere.
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
    parser.add_argument("--probe", action="store_true", help="also the frozen base-model probe router")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (--probe)")
    parser.add_argument("--misrouted", type=int, default=8, help="misrouted test rows listed per domain")
    args = parser.parse_args()
    from lora_adapt.domains.route_build import domain_rows
    from lora_adapt.domains.router import TfidfClassifier
    from lora_adapt.modeling import resolve_adapter

    infos = {n: resolve_adapter(args.work / "runs" / n, name=n) for n in DOMAINS}
    texts = {n: domain_rows(info) for n, info in infos.items()}
    report = {
        "command": " ".join(["python", *sys.argv]),
        "rows": {n: {k: len(v) for k, v in t.items()} for n, t in texts.items()},
        "caps": [],
    }
    features = None
    if args.probe:
        start = time.perf_counter()
        base = str(next(iter(infos.values())).base_model.get("name_or_path"))
        features = embed_all(base, texts, args.threads)
        report["probe"] = {"base": base, "embed_seconds": round(time.perf_counter() - start, 1), "caps": []}
    for cap_text in args.caps.split(","):
        cap = None if cap_text == "all" else int(cap_text)
        train, validation = [], []  # (domain, index into train + validation texts)
        for name, splits in texts.items():
            own = list(range(len(splits.get("train", [])) + len(splits.get("validation", []))))
            rng = random.Random(args.seed)
            if cap is not None and len(own) > cap:
                own = rng.sample(own, cap)
            rng.shuffle(own)
            held = max(1, len(own) // 10)
            validation += [(name, i) for i in own[:held]]
            train += [(name, i) for i in own[held:]]
        start = time.perf_counter()
        router = TfidfClassifier.fit(rows_of(texts, train), rows_of(texts, validation))
        entry = {"cap": cap_text, "train_rows": len(train), "c": router.c, "domains": {}}
        routed = {
            name: [max(p, key=p.__getitem__) for p in router.probabilities(s["test"])]
            for name, s in texts.items()
        }
        score(entry, routed)
        entry["seconds"] = round(time.perf_counter() - start, 1)
        report["caps"].append(entry)
        print(json.dumps(entry), flush=True)
        if features is not None:
            probe = {"cap": cap_text, "train_rows": len(train), "domains": {}}
            routed_probe = probe_routes(features, train, validation, probe)
            score(probe, routed_probe)
            report["probe"]["caps"].append(probe)
            print("probe", json.dumps(probe), flush=True)
        last = (routed, routed_probe if features is not None else None)
    report["misrouted"] = {
        kind: {
            name: [
                {"text": text, "routed": to}
                for text, to in zip(texts[name]["test"], routes[name], strict=True)
                if to != name
            ][: args.misrouted]
            for name in DOMAINS
        }
        for kind, routes in zip(("tfidf", "probe"), last, strict=True)
        if routes is not None
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "router_rows.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Router accuracy against training rows per domain (TF-IDF; with --probe, the frozen base-model probe)",
        "",
        f"Command: `{report['command']}`. Rows per adapter run: {report['rows']}.",
        "Each domain's own test split, routed to the top domain (no threshold). Mark: >= 0.98.",
        "",
        *table(report["caps"]),
    ]
    if "probe" in report:
        probe = report["probe"]
        lines += [
            "",
            f"## Frozen-probe router ({probe['base']}, mean-pooled features + logistic regression; embedding every "
            f"text took {probe['embed_seconds']} s)",
            "",
            *table(probe["caps"]),
        ]
    for kind, domains in report["misrouted"].items():
        lines += [
            "",
            f"## Test rows the {kind} router trained on the most rows sent elsewhere (first {args.misrouted})",
            "",
        ]
        for name, rows in domains.items():
            lines += [f"- {name} -> {r['routed']}: `{r['text'][:160]}`" for r in rows]
    (RESULTS / "router_rows.md").write_text("\n".join(lines) + "\n")


def table(caps: list[dict]) -> list[str]:
    lines = [
        "| rows per domain (cap) | router training rows | C | " + " | ".join(DOMAINS) + " | all |",
        "|---|---|---|" + "---|" * len(DOMAINS) + "---|",
    ]
    for e in caps:
        cells = " | ".join(f"{e['domains'][n]['accuracy']:.4f}" for n in DOMAINS)
        lines.append(f"| {e['cap']} | {e['train_rows']} | {e['c']:g} | {cells} | {e['all']:.4f} |")
    return lines


def rows_of(texts: dict, picks: list[tuple[str, int]]) -> list[dict]:
    own = {n: [*s.get("train", []), *s.get("validation", [])] for n, s in texts.items()}
    return [{"text": own[name][i], "label": name} for name, i in picks]


def score(entry: dict, routed: dict[str, list[str]]) -> None:
    right = total = 0
    for name, routes in routed.items():
        hits = sum(r == name for r in routes)
        entry["domains"][name] = {"rows": len(routes), "accuracy": round(hits / len(routes), 4)}
        right, total = right + hits, total + len(routes)
    entry["all"] = round(right / total, 4)


def embed_all(base: str, texts: dict, threads: int) -> dict:
    """Mean-pooled last hidden states of every text (the evaluation probe's features), per domain and split."""
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    from lora_adapt.modeling.source import resolve_model_source
    from lora_adapt.recipe.schema import ModelSpec

    torch.set_num_threads(threads)
    path = resolve_model_source(ModelSpec(name_or_path=base)).load_path  # package:, a folder or a Hub id
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

    @torch.no_grad()
    def embed(batch: list[str]):
        inputs = tokenizer(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
        hidden = model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy()

    out = {}
    for name, splits in texts.items():
        own = [*splits.get("train", []), *splits.get("validation", [])]
        for split, rows in (("own", own), ("test", splits["test"])):
            out[(name, split)] = (
                np.concatenate([embed(rows[i : i + 64]) for i in range(0, len(rows), 64)])
                if rows
                else np.zeros((0, model.config.hidden_size))
            )
    return out


def probe_routes(features: dict, train: list, validation: list, entry: dict) -> dict[str, list[str]]:
    import numpy as np
    from sklearn.preprocessing import StandardScaler

    from lora_adapt.evaluation.baselines import fit_predict

    def xy(picks):
        return np.stack([features[(n, "own")][i] for n, i in picks]), [n for n, _ in picks]

    x_train, y_train = xy(train)
    x_val, y_val = xy(validation)
    scaler = StandardScaler().fit(x_train)
    tests = [features[(n, "test")] for n in DOMAINS]
    chosen: dict = {}
    routes = fit_predict(
        scaler.transform(x_train),
        y_train,
        scaler.transform(x_val),
        y_val,
        scaler.transform(np.concatenate(tests)),
        chosen=chosen,
    )
    entry["c"] = chosen["C"]
    starts = np.cumsum([0, *(len(t) for t in tests)])
    return {n: routes[starts[k] : starts[k + 1]] for k, n in enumerate(DOMAINS)}


if __name__ == "__main__":
    main()
