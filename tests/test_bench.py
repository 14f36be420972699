"""The benchmark harness: deterministic pieces in the default suite (FLOPs ratio, probe counts, summary
and report), a 2-step end-to-end bench on a tiny model under `-m slow`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from transformers import AutoModelForCausalLM, AutoTokenizer

from lora_adapt.bench import arms_for, run_bench
from lora_adapt.bench.data import synthetic_rows, write_jsonl
from lora_adapt.bench.probe import StepProbe
from lora_adapt.bench.results import marks, ratios, spread
from lora_adapt.bench.tables import markdown
from lora_adapt.cli import main


def test_arms_are_interleavable_and_peers_fit_the_task():
    generative = arms_for(("full", "lora", "qlora"), ("trainer", "trl"), packing=True, generative=True)
    assert [a.name for a in generative] == [
        "lora-adapt/full",
        "lora-adapt/lora",
        "lora-adapt/qlora",
        "peer-trainer/lora",
        "peer-trl/lora",
        "lora-adapt/lora+packing",
    ]
    head = arms_for(("lora",), ("trainer", "trl"), packing=True, generative=False)
    assert [a.name for a in head] == ["lora-adapt/lora", "peer-trainer/lora"]  # no TRL, no packing for heads


def fake_run(arm: str, repeat: int, tokens_per_s: float, peak: int, flops: float) -> dict:
    return {
        "spec": {"arm": arm, "repeat": repeat},
        "tokens_per_s": tokens_per_s,
        "peak_rss": peak,
        "model_flops_per_token": flops,
    }


def test_ratios_are_paired_by_repeat_with_median_and_range():
    runs = [fake_run("lora-adapt/full", r, 100.0 * (r + 1), 1000, 6.0) for r in range(3)]
    runs += [fake_run("lora-adapt/lora", r, 150.0 * (r + 1), 400, 4.1) for r in range(3)]
    out = {(x["numerator"], x["metric"]): x for x in ratios(runs, "cpu")}
    speed = out[("lora-adapt/lora", "tokens_per_s")]
    assert speed["median"] == pytest.approx(1.5) and speed["min"] == speed["max"] == pytest.approx(1.5)
    assert out[("lora-adapt/lora", "model_flops_per_token")]["median"] == pytest.approx(4.1 / 6.0)
    assert spread([3.0, None, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}


def test_gpu_marks_are_never_claimed_from_a_cpu_run():
    runs = [
        fake_run("lora-adapt/full", 0, 100.0, 1000, 6.0),
        fake_run("lora-adapt/lora", 0, 200.0, 300, 4.0),
        fake_run("lora-adapt/qlora", 0, 150.0, 200, 3.0),
    ]
    summary = {"device": "cpu", "ratios": ratios(runs, "cpu"), "arms": {}}
    by_mark = {m["mark"]: m for m in marks(summary)}
    assert by_mark["LoRA tokens/s >= 1.3x full (GPU)"]["status"] == "not measured here"
    assert by_mark["QLoRA peak memory <= 0.30x bf16 full fine-tune"]["status"] == "not measured here"
    assert by_mark["LoRA/full FLOPs per token 0.67 +- 0.03"]["status"] == "met"


def test_flops_ratio_lora_over_full_is_in_the_published_band():
    """FlopCounterMode on one training step of a small Llama: LoRA/full = 0.67 +- 0.03 (PERFORMANCE.md)."""
    from peft import LoraConfig, get_peft_model
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import LlamaConfig

    config = LlamaConfig(
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=8,
        vocab_size=4096,
    )
    ids = torch.randint(0, 4096, (1, 32), generator=torch.Generator().manual_seed(0))

    def flops(model) -> int:
        with FlopCounterMode(display=False) as counter:
            model(input_ids=ids, labels=ids).loss.backward()
        return counter.get_total_flops()

    torch.manual_seed(0)
    full = flops(AutoModelForCausalLM.from_config(config))
    lora = flops(
        get_peft_model(
            AutoModelForCausalLM.from_config(config),
            LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"),
        )
    )
    assert 0.64 <= lora / full <= 0.70


def test_probe_counts_real_tokens_saved_bytes_and_flops(tiny_llama_dir, tmp_path):
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tokenizer.pad_token = tokenizer.eos_token
    lengths = [8, 30, 17, 5, 26, 12, 40, 9] * 3  # length-varied rows: batches carry padding
    data = Dataset.from_list([{"input_ids": [5 + (i % 50) for i in range(n)]} for n in lengths])
    probe = StepProbe(warmup=1, timed=2)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=4,
        use_cpu=True,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
    )
    Trainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
        args=args,
        train_dataset=data,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        callbacks=[probe],
    ).train()
    r = probe.result
    assert [s.step for s in r.steps] == [2, 3]  # warm-up and FLOP-counting steps are not timed
    assert all(0 < s.tokens <= s.processed for s in r.steps)
    assert any(s.tokens < s.processed for s in r.steps)  # length-varied rows: padding is excluded
    assert r.saved_bytes > 0 and r.flops > 0 and r.flop_tokens > 0 and len(r.losses) == 4
    assert r.longest_batch[0] == 4 and r.saved_batch[0] == 4


def test_report_renders_from_a_summary():
    summary = {
        "model": "llama-tiny",
        "device": "cpu",
        "command": "lora-adapt bench x.yaml",
        "created_utc": "now",
        "hardware": {"cpu": "cpu", "logical_cpus": 2, "ram_bytes": 2**30, "platform": "linux"},
        "versions": {
            k: "1" for k in ("python", "torch", "transformers", "trl", "peft", "bitsandbytes", "lora-adapt")
        },
        "settings": {
            "task": "sft",
            "max_seq_length": 64,
            "batch_size": 2,
            "gradient_accumulation_steps": 1,
            "packing": False,
            "gradient_checkpointing": False,
            "optimizer": "adamw_torch",
            "precision": "auto",
            "model_dtype": "auto",
            "attn_implementation": "auto",
            "adapter": {"method": "lora", "rank": 8, "target_modules": "all-linear", "dropout": 0.05},
            "quantization_when_qlora": "nf4",
        },
        "repeats": 1,
        "malloc": "default",
        "ratios": [],
        "marks": [],
        "arms": {
            "lora-adapt/lora": {
                "errors": ["Traceback\nOutOfMemoryError: CUDA out of memory"],
                "metrics": {"tokens_per_s": spread([])},
                "predicted": None,
                "trainable_params": None,
            }
        },
    }
    text = markdown(summary, "chart.png")
    assert "failed: OutOfMemoryError" in text and "![charts](chart.png)" in text
    assert "packing False," in text
    summary["arms"]["lora-adapt/lora+packing"] = summary["arms"]["lora-adapt/lora"]
    assert "packing False (on in lora-adapt/lora+packing)," in markdown(summary, "chart.png")


def test_cli_bench_rejects_unknown_modes(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump({"name": "b", "model": {"name_or_path": "llama-tiny"}, "data": {"train": "t.jsonl"}})
    )
    result = CliRunner().invoke(main, ["bench", str(recipe), "--modes", "full,lorra"])
    assert result.exit_code == 2 and "lorra" in result.output


@pytest.mark.slow
def test_two_step_bench_end_to_end(tiny_llama_dir, tmp_path):
    data = write_jsonl(synthetic_rows(48), tmp_path / "train.jsonl")
    recipe = tmp_path / "bench.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "bench-tiny",
                "model": {"name_or_path": str(tiny_llama_dir)},
                "adapter": {"rank": 8},
                "data": {
                    "train": str(data),
                    "format": "instruction",
                    "max_seq_length": 64,
                    "cleaning": {"overlength": "truncate"},
                },
                "training": {"batch_size": 4},
            }
        )
    )
    out = tmp_path / "results"
    summary = run_bench(
        recipe,
        modes=("full", "lora", "qlora"),
        peers=("trainer", "trl"),
        steps=2,
        warmup=1,
        repeats=1,
        out_dir=out,
        workdir=tmp_path / "work",
        packing=True,
        label="tiny",
        echo=lambda _: None,
    )
    assert {p.name for p in out.iterdir()} == {"tiny.json", "tiny.md", "tiny.png"}
    assert all(not arm["errors"] for arm in summary["arms"].values()), summary["arms"]
    saved = json.loads(Path(out / "tiny.json").read_text())
    flops = next(r for r in saved["ratios"] if r["metric"] == "flops_per_token")
    assert 0.3 < flops["median"] < 1.0
    for arm in saved["arms"].values():
        assert arm["predicted"]["peak"] > 0 and arm["metrics"]["tokens_per_s"]["n"] == 1


@pytest.mark.parametrize("failed", [False, True])
def test_the_default_work_folder_is_removed_unless_an_arm_failed(
    tiny_llama_dir, tmp_path, monkeypatch, failed
):
    """Without --workdir the models, data and logs go to a scratch folder: removed at the end, or kept
    under a name no later run sweeps away when an arm failed (its log is the evidence)."""
    import tempfile

    from lora_adapt.bench import results, runner

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)
    recipe = tmp_path / "bench.yaml"
    data = write_jsonl(synthetic_rows(8), tmp_path / "train.jsonl")
    recipe.write_text(
        yaml.safe_dump(
            {"name": "b", "model": {"name_or_path": str(tiny_llama_dir)}, "data": {"train": str(data)}}
        )
    )

    def arms(recipe, work, *args):  # what _run_arms leaves: a log per arm
        (work / "specs").mkdir(parents=True)
        (work / "specs" / "lora_r0.log").write_text("Traceback: out of memory")
        return {"device": "cpu", "runs": [{"error": "out of memory"} if failed else {"tokens_per_s": 1.0}]}

    monkeypatch.setattr(runner, "_run_arms", arms)
    monkeypatch.setattr(results, "write_results", lambda *a: None)
    said: list[str] = []
    run_bench(recipe, modes=("lora",), out_dir=tmp_path / "out", echo=said.append)
    left = list(scratch.iterdir())
    if not failed:
        assert left == []
        return
    (kept,) = left
    assert kept.name.startswith("lora-adapt-bench-logs-") and (kept / "specs" / "lora_r0.log").is_file()
    assert any(str(kept / "specs") in line for line in said)
    from lora_adapt.artifacts import remove_stale_scratch

    assert remove_stale_scratch() == [] and kept.is_dir()  # no later command sweeps it away


def test_the_committed_sweep_results_render_to_the_committed_table(tmp_path):
    """benchmarks/results/sweep_cpu.md is what `sweep_bench.py --render` makes of the JSON beside it (the
    numbers in the table are the measured ones, not edited by hand)."""
    import shutil
    import subprocess
    import sys

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    shutil.copy(results / "sweep_cpu.json", tmp_path / "sweep_cpu.json")
    script = results.parent / "sweep_bench.py"
    subprocess.run(
        [sys.executable, str(script), "--render", "--out", str(tmp_path / "sweep_cpu")], check=True
    )
    assert (tmp_path / "sweep_cpu.md").read_text() == (results / "sweep_cpu.md").read_text()
