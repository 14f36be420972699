"""Data preparation at scale: lora-adapt's `data prepare` (first run, then the cached rerun) against the
plain `datasets.load_dataset("json")` + batched tokenizer `map` script, on N short instruction rows
(alpaca-style, a byte-level BPE tokenizer, max length 256). Each arm runs in its own process; CPU seconds
(user + system) and peak RSS are the process's own (`getrusage`).

    python benchmarks/data_prep_bench.py --rows 100000 1000000 --out benchmarks/results/data_prep.json

Arms interleave over `--repeats`; the summary gives medians with their range, per row count, and the
issue-15 marks: at the largest count, lora-adapt's first preparation at >= 1.0x the plain script's CPU-time
throughput (process CPU seconds, imports included, and the preparation's own) and <= 1.2x its peak RSS; its
peak RSS at the largest count <= 1.5x that at the smallest; the cached rerun's preparation <= 5% of the first
run's. The machine is shared: read the ratios."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PLAIN = r"""
import sys, time, datasets
from transformers import AutoTokenizer
datasets.disable_progress_bars()
tok = AutoTokenizer.from_pretrained(sys.argv[1])
start = time.process_time()
ds = datasets.load_dataset("json", data_files=sys.argv[2], split="train")
def fmt(batch):
    texts = [f"### Instruction:\n{i}\n\n### Input:\n{x}\n\n### Response:\n{o}"
             for i, x, o in zip(batch["instruction"], batch["input"], batch["output"])]
    return tok(texts, truncation=True, max_length=256)
ds = ds.map(fmt, batched=True, remove_columns=ds.column_names)
PREP = time.process_time() - start
"""
LORA_ADAPT = r"""
import sys, time
from lora_adapt.quiet import quiet_libraries
from lora_adapt.recipe import load_recipe
from lora_adapt.runtime import recipe_data, recipe_tokenizer
quiet_libraries()
recipe = load_recipe(sys.argv[1])
tokenizer = recipe_tokenizer(recipe)
start = time.process_time()
recipe_data(recipe, tokenizer)
PREP = time.process_time() - start
"""
USAGE = r"""
import resource, sys
code = sys.argv[1]
sys.argv = ["arm", *sys.argv[2:]]
scope = {"__name__": "__main__"}
exec(compile(code, "arm", "exec"), scope)
u = resource.getrusage(resource.RUSAGE_SELF)
print("USAGE", u.ru_utime + u.ru_stime, u.ru_maxrss * 1024, scope["PREP"])
"""
WORDS = "the a patient meter bill contract tenant rent refund power outage card charge notice day".split()


def write_rows(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            row = {
                "instruction": f"Summarise ticket {i}: " + " ".join(rng.choices(WORDS, k=rng.randint(4, 12))),
                "input": " ".join(rng.choices(WORDS, k=rng.randint(0, 20))),
                "output": " ".join(rng.choices(WORDS, k=rng.randint(3, 30))),
            }
            out.write(json.dumps(row) + "\n")


def write_tokenizer(folder: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    from lora_adapt.bench.models import train_tokenizer

    tokenizer = train_tokenizer([" ".join(WORDS)] * 50, vocab_size=2000)
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    LlamaForCausalLM(config).save_pretrained(folder)  # a model folder (only its tokenizer is read)
    return folder


def write_recipe(path: Path, data: Path, tokenizer: Path) -> Path:
    """The bench's recipe (what a new user writes: an instruction file, max length 256, long rows truncated)."""
    recipe = {
        "name": "data-prep-bench",
        "model": {"name_or_path": str(tokenizer)},
        "data": {
            "path": str(data),
            "format": "instruction",
            "max_seq_length": 256,
            "cleaning": {"overlength": "truncate"},
        },
    }
    path.write_text(json.dumps(recipe))
    return path


def run_arm(code: str, args: list[str], env: dict[str, str]) -> tuple[float, int, float]:
    """(process CPU seconds, peak RSS bytes, CPU seconds of the preparation itself, imports excluded).
    The arm runs in this checkout's root, and `python -c` puts its working directory first on the import
    path: the lora-adapt measured is this script's checkout, wherever the bench is started from."""
    proc = subprocess.run(
        [sys.executable, "-c", USAGE, code, *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("USAGE"))
    _, cpu, rss, prep = line.split()
    return float(cpu), int(rss), float(prep)


def measure(rows: int, repeats: int, work: Path, tokenizer: Path) -> dict:
    """One row count: the three arms, each in its own process, interleaved over `repeats`."""
    data = work / f"rows-{rows}.jsonl"
    write_rows(data, rows)
    recipe = write_recipe(work / f"recipe-{rows}.json", data, tokenizer)
    results: dict[str, list[tuple[float, int, float]]] = {
        "plain": [],
        "lora-adapt": [],
        "lora-adapt cached": [],
    }
    for repeat in range(repeats):
        base = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
        plain_env = {**base, "HF_DATASETS_CACHE": str(work / f"hf-{rows}-{repeat}")}
        results["plain"].append(run_arm(PLAIN, [str(tokenizer), str(data)], plain_env))
        cache_env = {**base, "LORA_ADAPT_DATA_CACHE": str(work / f"cache-{rows}-{repeat}")}
        results["lora-adapt"].append(run_arm(LORA_ADAPT, [str(recipe)], cache_env))
        results["lora-adapt cached"].append(run_arm(LORA_ADAPT, [str(recipe)], cache_env))
        print(rows, repeat, {k: v[-1] for k, v in results.items()}, flush=True)
        for folder in (work / f"hf-{rows}-{repeat}", work / f"cache-{rows}-{repeat}"):
            shutil.rmtree(folder, ignore_errors=True)
    data.unlink()
    arms = {
        name: {
            "cpu_s": statistics.median(c for c, _, _ in runs),
            "cpu_s_range": [min(c for c, _, _ in runs), max(c for c, _, _ in runs)],
            "prep_cpu_s": statistics.median(p for _, _, p in runs),
            "peak_rss_mib": statistics.median(r for _, r, _ in runs) / 2**20,
        }
        for name, runs in results.items()
    }
    plain = arms["plain"]
    for arm in arms.values():
        arm["throughput_vs_plain"] = plain["cpu_s"] / arm["cpu_s"]
        arm["prep_throughput_vs_plain"] = plain["prep_cpu_s"] / arm["prep_cpu_s"]
        arm["rss_vs_plain"] = arm["peak_rss_mib"] / plain["peak_rss_mib"]
    return {
        "rows": rows,
        "arms": arms,
        "cached_share_of_first_run": arms["lora-adapt cached"]["prep_cpu_s"]
        / arms["lora-adapt"]["prep_cpu_s"],
    }


def marks(sizes: list[dict]) -> dict:
    small, large = sizes[0], sizes[-1]
    first = large["arms"]["lora-adapt"]
    out = {
        "rows": large["rows"],
        "throughput_vs_plain (>= 1.0)": first["throughput_vs_plain"],
        "prep_throughput_vs_plain (>= 1.0)": first["prep_throughput_vs_plain"],
        "rss_vs_plain (<= 1.2)": first["rss_vs_plain"],
        "cached_share_of_first_run (<= 0.05)": large["cached_share_of_first_run"],
    }
    if len(sizes) > 1:
        out[f"rss {large['rows']} / rss {small['rows']} (<= 1.5)"] = (
            first["peak_rss_mib"] / small["arms"]["lora-adapt"]["peak_rss_mib"]
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="lora-adapt-data-bench-"))
    try:
        tokenizer = write_tokenizer(work / "tokenizer")
        sizes = [measure(rows, args.repeats, work, tokenizer) for rows in sorted(args.rows)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        "command": "python benchmarks/data_prep_bench.py " + " ".join(argv or sys.argv[1:]),
        "sizes": sizes,
        "marks": marks(sizes),
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
