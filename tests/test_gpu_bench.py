"""benchmarks/gpu_bench.sh is ready for the first lent GPU: its CPU dry run (the same stages, arms and code
paths on tiny shapes, CUDA-only steps skipped and listed) finishes with every arm measured."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = {  # label: arms the stage must measure
    "gpu_llama-1b": [
        "lora-adapt/full",
        "lora-adapt/lora",
        "lora-adapt/qlora",
        "peer-trainer/lora",
        "peer-trl/lora",
        "lora-adapt/lora+packing",
        "lora-adapt/lora+loss=chunked",
        "lora-adapt/lora+loss=trl",
    ],
    "gpu_llama-1b-8k": ["lora-adapt/lora", "peer-trainer/lora", "lora-adapt/lora+loss=chunked"],
    "gpu_llama-8b": ["lora-adapt/full", "lora-adapt/lora", "lora-adapt/qlora"],
    "gpu24_llama-8b": ["lora-adapt/full", "lora-adapt/lora", "lora-adapt/qlora"],
}
PLANS = ("gpu_plan_llama-1b", "gpu_plan_llama-1b-8k", "gpu_plan_llama-8b", "gpu24_plan_llama-8b")


@pytest.mark.slow
def test_gpu_bench_dry_run_measures_every_arm(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "DRY_RUN": "1", "OUT": str(out), "WORK": str(work), "PY": "python"}
    proc = subprocess.run(
        ["bash", "benchmarks/gpu_bench.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=3000
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "!! bench" not in proc.stdout, proc.stdout[-3000:]
    skipped = (out / "gpu_skipped.txt").read_text()
    for step in ("nvidia-smi", "liger", "LORA_ADAPT_BENCH_GPU_MEMORY"):
        assert step in skipped
    for label, arms in STAGES.items():
        summary = json.loads((work / "results" / f"{label}.json").read_text())
        for arm in arms:
            measured = summary["arms"][arm]
            assert not measured["errors"], (label, arm, measured["errors"])
            assert measured["metrics"]["tokens_per_s"]["median"], (label, arm)
            assert measured["predicted"]["peak"] > 0
        assert (out / f"{label}.md").is_file()
    for name in PLANS:  # the planner's verdicts for the real shapes
        plan = json.loads((work / "results" / f"{name}.json").read_text())
        assert plan["modes"], name
    domains = json.loads((work / "results" / "gpu_domains.json").read_text())  # issue 11's mixed batches
    assert [t["adapters"] for t in domains["throughput"]] == [1, 2, 4, 8]
    assert all(t["same_outputs"] and t["speedup_median"] > 0 for t in domains["throughput"])
    assert (out / "gpu_domains.md").is_file()
    with tarfile.open(out / "gpu_results.tar.gz") as archive:
        names = archive.getnames()
    assert any(n.endswith("gpu_llama-1b-8k.json") for n in names)
