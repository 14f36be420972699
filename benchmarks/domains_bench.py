"""Many domains, one base: three real MiniLM adapters (support tickets, SMS spam, BANKING77) on one server.

    python benchmarks/domains_train.py --work /tmp/domains-bench --threads 1     # the three adapters (reduced)
    python benchmarks/domains_bench.py --work /tmp/domains-bench --threads 1     # this file

Measures, each on the real server (FastAPI + uvicorn on 127.0.0.1) where it says so:
1. each adapter's test-split scores through the server (/v1/classify, all three adapters loaded, requests
   mixed) against its own `lora-adapt eval` (rescore.evaluate_run);
2. the router (`route build` from the three runs' training data) on the three test splits, directly and
   through the server (`model: auto`);
3. throughput of one mixed-adapter batch against switching adapters between sequential requests
   (8 requests over 1, 2, 4 and 8 adapters; adapters 4-8 are copies of the real three under other names),
   in process and through the server; outputs compared;
4. p50 / p95 latency under concurrent load through the server (micro-batching on and off);
5. the memory each adapter adds, against its own parameter bytes.

Writes benchmarks/results/domains_cpu.json and domains_cpu.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DOMAINS = ("tickets", "sms", "bank")
COPIES = {"tickets2": "tickets", "sms2": "sms", "bank2": "bank", "tickets3": "tickets", "sms3": "sms"}
REQUESTS = 8
PARTS = ("eval", "router", "throughput", "server", "memory")
CHUNK = 16


MAX_ROWS: int | None = None  # --max-rows: each test split capped to a seeded sample (as eval's max_samples)


def test_rows(run_dir: Path) -> tuple[list[dict], Any]:
    """The run's test split as `eval` scores it (the same seeded sample when --max-rows caps it)."""
    import numpy as np

    from lora_adapt.data import load_split_rows
    from lora_adapt.rundir import read_run

    recipe = read_run(run_dir).recipe
    splits, _ = load_split_rows(recipe.data, recipe.task)
    rows = splits["test"]
    if MAX_ROWS is not None and len(rows) > MAX_ROWS:
        keep = np.random.default_rng(recipe.training.seed).choice(len(rows), MAX_ROWS, replace=False)
        rows = [rows[i] for i in sorted(keep.tolist())]
    return rows, recipe.task


def own_eval(runs: dict[str, Path]) -> dict[str, Any]:
    from lora_adapt.rescore import evaluate_run

    out = {}
    for name, run_dir in runs.items():
        start = time.perf_counter()
        result = evaluate_run(
            run_dir, data_file=None, split="test", baselines=(), max_samples=MAX_ROWS, echo=lambda _: None
        )
        out[name] = {"metrics": _scores(result["task"]), "seconds": round(time.perf_counter() - start, 1)}
    return out


def _scores(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        k: metrics[k] for k in ("n", "accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro")
    }


def through_server(url: str, runs: dict[str, Path], model: str | None = None) -> dict[str, Any]:
    """Every test row of every domain sent to /v1/classify (4 clients, domains interleaved)."""
    import httpx

    from lora_adapt.domains.scores import score_predictions

    work = []
    rows_of = {}
    for name, run_dir in runs.items():
        rows, task = test_rows(run_dir)
        rows_of[name] = (rows, task)
        work += [(name, start) for start in range(0, len(rows), CHUNK)]
    work.sort(key=lambda item: item[1])  # interleave the domains
    answers: dict[tuple[str, int], list[dict]] = {}
    with httpx.Client(base_url=url, timeout=600) as http:

        def ask(item: tuple[str, int]) -> None:
            name, start = item
            texts = [r["text"] for r in rows_of[name][0][start : start + CHUNK]]
            response = http.post(
                "/v1/classify", json={"model": model or name, "input": texts, "top_labels": 1}
            )
            response.raise_for_status()
            answers[item] = response.json()["data"]

        start = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(ask, work))
        seconds = time.perf_counter() - start
    out: dict[str, Any] = {"seconds": round(seconds, 1)}
    for name, (rows, task) in rows_of.items():
        results = [r for start in range(0, len(rows), CHUNK) for r in answers[(name, start)]]
        routed = [r["adapter"] for r in results]
        entry: dict[str, Any] = {
            "rows": len(rows),
            "routed_right": round(sum(a == name for a in routed) / len(rows), 6),
        }
        if model is None:
            from lora_adapt.domains.tasks import task_kind
            from lora_adapt.modeling import resolve_adapter

            kind = task_kind(resolve_adapter(runs[name]))
            entry["metrics"] = _scores(score_predictions(kind, rows, results, task))
        out[name] = entry
    return out


def throughput(aset, texts: dict[str, str], repeats: int) -> list[dict[str, Any]]:
    """8 requests over k adapters: one mixed batch vs switching adapters per sequential request (interleaved)."""
    names = list(aset.adapter_names)
    rows = []
    for k in (1, 2, 4, 8):
        chosen = [names[i % k] for i in range(REQUESTS)]
        items = [(n, texts[n.rstrip("23")] + f" (request {i})") for i, n in enumerate(chosen)]
        mixed_out = aset.run(items, top_k=0)
        switch_out = [aset.run([item], top_k=0)[0] for item in items]
        same = all(
            a["label"] == b["label"]
            and max(abs(a["probabilities"][x] - b["probabilities"][x]) for x in a["probabilities"]) < 1e-5
            for a, b in zip(mixed_out, switch_out, strict=True)
        )
        mixed_t, switch_t = [], []
        for _ in range(repeats):  # A B A B ...: the machine's load swings hit both alike
            start = time.perf_counter()
            aset.run(items)
            mixed_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            for item in items:
                aset.run([item])
            switch_t.append(time.perf_counter() - start)
        ratios = [s / m for s, m in zip(switch_t, mixed_t, strict=True)]
        rows.append(
            {
                "adapters": k,
                "requests": REQUESTS,
                "mixed_req_s": round(REQUESTS / statistics.median(mixed_t), 1),
                "switching_req_s": round(REQUESTS / statistics.median(switch_t), 1),
                "speedup_median": round(statistics.median(ratios), 2),
                "speedup_range": [round(min(ratios), 2), round(max(ratios), 2)],
                "same_outputs": same,
            }
        )
    return rows


def server_load(aset, texts: dict[str, str], *, batch: int, clients: int, per_client: int) -> dict[str, Any]:
    """Latency of /v1/classify with ``clients`` concurrent clients, each sending ``per_client`` requests."""
    import httpx

    from lora_adapt.recipe.serving import ServeSpec
    from lora_adapt.serve import running

    names = list(aset.adapter_names)
    latencies: list[float] = []
    with running(aset, ServeSpec(port=0, max_batch_size=batch, max_wait_ms=5, max_concurrent=256)) as served:
        with httpx.Client(base_url=served.url, timeout=600) as http:

            def client(c: int) -> None:
                for i in range(per_client):
                    name = names[(c + i) % len(names)]
                    start = time.perf_counter()
                    http.post(
                        "/v1/classify", json={"model": name, "input": texts[name.rstrip("23")] + f" #{c}.{i}"}
                    ).raise_for_status()
                    latencies.append(time.perf_counter() - start)

            start = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(client, range(clients)))
            wall = time.perf_counter() - start
        sizes = served.state.batcher.batch_sizes
    ordered = sorted(latencies)
    return {
        "max_batch_size": batch,
        "clients": clients,
        "requests": len(latencies),
        "p50_ms": round(1000 * ordered[len(ordered) // 2], 1),
        "p95_ms": round(1000 * ordered[int(len(ordered) * 0.95) - 1], 1),
        "req_s": round(len(latencies) / wall, 1),
        "mean_batch": round(statistics.mean(sizes), 2) if sizes else None,
    }


def memory(runs: dict[str, Path]) -> list[dict[str, Any]]:
    """Load the widest head first (BANKING77), then the others and the copies: bytes each one adds."""
    import psutil

    from lora_adapt import AdapterSet
    from lora_adapt.domains.adapter_set import tensor_bytes

    process = psutil.Process()
    aset = AdapterSet.load({"bank": runs["bank"]})
    rows = [{"adapter": "bank", **aset["bank"].memory, "rss_delta": None}]
    for name, source in [("tickets", "tickets"), ("sms", "sms"), *COPIES.items()]:
        rss = process.memory_info().rss
        member = aset.add(name, runs[source])
        rows.append({"adapter": name, **member.memory, "rss_delta": process.memory_info().rss - rss})
    for row in rows:
        row["added_over_parameters"] = round(row["added_bytes"] / row["parameter_bytes"], 4)
    rows.append({"adapter": "(base + all)", "total_bytes": tensor_bytes(aset.model)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True, help="the folder domains_train.py wrote")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--skip-router", action="store_true")
    parser.add_argument("--max-rows", type=int, default=None, help="cap each test split (seeded sample)")
    parser.add_argument(
        "--router-rows", type=int, default=500, help="training rows per domain for the router"
    )
    parser.add_argument("--router-epochs", type=float, default=2.0)
    parser.add_argument("--latency-requests", type=int, default=25, help="requests per client (16 clients)")
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated parts to measure (eval, router, throughput, server, memory) [all]",
    )
    parser.add_argument("--device", default="auto", help="the base's device (auto, cpu, cuda)")
    parser.add_argument("--label", default="domains_cpu", help="results file name (without suffix)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args()
    parts = set((args.only or ",".join(PARTS)).split(","))
    if parts - set(PARTS):
        parser.error(f"--only: unknown part(s) {sorted(parts - set(PARTS))}; choose from {', '.join(PARTS)}")
    global MAX_ROWS
    MAX_ROWS = args.max_rows
    import torch

    from lora_adapt import AdapterSet
    from lora_adapt.quiet import quiet_libraries

    torch.set_num_threads(args.threads)
    quiet_libraries()
    runs = {name: args.work / "runs" / name for name in DOMAINS}
    report: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "machine": _machine(args.threads),
        "parts": [p for p in PARTS if p in parts],
    }
    started = time.perf_counter()
    aset = AdapterSet.load(runs, device=args.device)
    report["machine"]["device"] = str(next(aset.model.parameters()).device)
    if "eval" in parts:
        from lora_adapt.recipe.serving import ServeSpec
        from lora_adapt.serve import running

        print("eval: own eval ...", flush=True)
        report["own_eval"] = own_eval(runs)
        print("eval: through the server ...", flush=True)
        with running(aset, ServeSpec(port=0, max_batch_size=16, max_wait_ms=5)) as served:
            report["server_eval"] = through_server(served.url, runs)
    if "router" in parts and not args.skip_router:
        print("router ...", flush=True)
        report["router"] = router(args.work, runs, aset, args.router_rows, args.router_epochs)
    texts = {name: test_rows(run_dir)[0][0]["text"] for name, run_dir in runs.items()}
    for name, source in COPIES.items():
        aset.add(name, runs[source])
    if "throughput" in parts:
        print("throughput ...", flush=True)
        report["throughput"] = throughput(aset, texts, args.repeats)
    if "server" in parts:
        print("through the server, latency under load ...", flush=True)
        report["server_throughput"] = [
            server_load(aset, texts, batch=b, clients=8, per_client=4) for b in (16, 1)
        ]
        report["latency"] = [
            server_load(aset, texts, batch=b, clients=16, per_client=args.latency_requests) for b in (16, 1)
        ]
    if "memory" in parts:
        print("memory ...", flush=True)
        report["memory"] = memory(runs)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.label}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{args.label}.md").write_text(render(report))
    print(render(report))


def router(work: Path, runs: dict[str, Path], aset, rows: int, epochs: float) -> dict[str, Any]:
    from lora_adapt.domains.route_build import build_router
    from lora_adapt.domains.router import load_router
    from lora_adapt.recipe.serving import ServeSpec
    from lora_adapt.serve import running

    start = time.perf_counter()
    out = work / "router"
    config = build_router(
        {n: str(p) for n, p in runs.items()},
        out,
        max_rows_per_domain=rows,
        epochs=epochs,
        overwrite=True,
        echo=print,
    )
    built = round(time.perf_counter() - start, 1)
    served = {}
    with running(aset, ServeSpec(port=0, max_batch_size=16, max_wait_ms=5), load_router(out, aset)) as server:
        served = through_server(server.url, runs, model="auto")
    if "router" in aset:
        aset.remove("router")
    return {"config": config, "build_s": built, "through_server": served}


def _machine(threads: int) -> dict[str, Any]:
    import os

    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,
    }


def render(r: dict[str, Any]) -> str:
    lines = [
        f"# Many domains, one base ({r['machine'].get('device', 'cpu').upper()})",
        "",
        f"Command: `{r['command']}` ({r['wall_s']} s wall). Machine: {r['machine']}.",
        "",
    ]
    if "own_eval" in r:
        lines += _scores_section(r)
    if "router" in r:
        lines += _router_section(r)
    if "throughput" in r:
        lines += _throughput_section(r)
    if "latency" in r:
        lines += _server_section(r)
    if "memory" in r:
        lines += _memory_section(r)
    return "\n".join(lines) + "\n"


def _scores_section(r: dict[str, Any]) -> list[str]:
    lines = [
        "## Scores through the server against each adapter's own `eval`",
        "",
        "| adapter | test rows | eval macro-F1 | server macro-F1 | eval accuracy | server accuracy | equal |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in DOMAINS:
        own, srv = r["own_eval"][name]["metrics"], r["server_eval"][name]["metrics"]
        lines.append(
            f"| {name} | {own['n']} | {own['f1_macro']:.4f} | {srv['f1_macro']:.4f} | {own['accuracy']:.4f} | {srv['accuracy']:.4f} | {own == srv} |"
        )
    return lines


def _router_section(r: dict[str, Any]) -> list[str]:
    config = r["router"]["config"]
    lines = [
        "",
        f"## Router (`route build`, {r['router']['build_s']} s): chose **{config['chosen']}** on its held-out slice {config.get('held_out', config.get('held_out_accuracy'))}",
        "",
    ]
    lines += [
        "| domain | test rows | routed right (direct) | routed right (server, model auto) | mark >= 0.98 |",
        "|---|---|---|---|---|",
    ]
    for name in DOMAINS:
        direct, srv = config["test_accuracy"][name], r["router"]["through_server"][name]
        lines.append(
            f"| {name} | {direct['rows']} | {direct['accuracy']:.4f} | {srv['routed_right']:.4f} | {direct['accuracy'] >= 0.98} |"
        )
    lines.append(
        f"| all | {config['test_accuracy']['all']['rows']} | {config['test_accuracy']['all']['accuracy']:.4f} | | |"
    )
    return lines


def _throughput_section(r: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Mixed-adapter batch vs switching adapters per request (in process, 8 requests)",
        "",
        "| adapters | mixed req/s | switching req/s | speedup median [range] | same outputs |",
        "|---|---|---|---|---|",
    ]
    for t in r["throughput"]:
        lines.append(
            f"| {t['adapters']} | {t['mixed_req_s']} | {t['switching_req_s']} | {t['speedup_median']} {t['speedup_range']} | {t['same_outputs']} |"
        )
    return lines


def _server_section(r: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Through the server (/v1/classify, 8 adapters loaded)",
        "",
        "| load | max batch | requests | p50 ms | p95 ms | req/s | mean batch |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, rows in (
        ("8 clients x 4", r["server_throughput"]),
        (f"16 clients x {r['latency'][0]['requests'] // 16}", r["latency"]),
    ):
        for s in rows:
            lines.append(
                f"| {label} | {s['max_batch_size']} | {s['requests']} | {s['p50_ms']} | {s['p95_ms']} | {s['req_s']} | {s['mean_batch']} |"
            )
    return lines


def _memory_section(r: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Memory each adapter adds (tensor bytes held by the model)",
        "",
        "| adapter | parameters | parameter bytes | added bytes | head padding | added / parameters | RSS delta |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in r["memory"]:
        if "parameters" in m:
            lines.append(
                f"| {m['adapter']} | {m['parameters']:,} | {m['parameter_bytes']:,} | {m['added_bytes']:,} | {m['padding_bytes']:,} | {m['added_over_parameters']} | {m['rss_delta'] if m['rss_delta'] is not None else 'n/a'} |"
            )
        else:
            lines.append(f"| {m['adapter']} | | | {m['total_bytes']:,} total | | | |")
    return lines


if __name__ == "__main__":
    main()
