"""Merge and export: verified merges from LoRA/QLoRA run directories, refusals, serving-engine checks.

Run directories are built here directly (manifest.json, recipe.resolved.yaml and a PEFT adapter with
non-zero weights, in the pipeline's format) so these tests do not depend on training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file
from tiny_models import build_tiny_causal_lm

from lora_adapt import artifacts as A
from lora_adapt.cli import main
from lora_adapt.errors import LoraAdaptError
from lora_adapt.export import check_adapter_weights, export_run, merge_run
from lora_adapt.manifest import config_sha256, tokenizer_sha256
from lora_adapt.modeling import load_model
from lora_adapt.recipe import dump_recipe, recipe_from_dict

PROMPTS = ["The patient was admitted with chest pain.", "Refunds are processed within five business days."]


def make_run(
    root: Path,
    base: Path,
    *,
    quantization: str = "none",
    rank: int = 4,
    dora: bool = False,
    modules_to_save: tuple[str, ...] = (),
    target_modules: list[str] | str = "all-linear",
    test_rows: list[dict] | None = None,
    name: str = "run",
) -> Path:
    """A finished run directory as the pipeline writes it, with a randomly initialised (non-zero) adapter."""
    from peft import LoraConfig, get_peft_model

    data = {"train": str(root / "train.jsonl")}
    if test_rows is not None:
        (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test_rows))
        data["test"] = str(root / "test.jsonl")
    recipe = recipe_from_dict(
        {
            "name": name,
            "model": {"name_or_path": str(base), "device": "cpu"},
            "quantization": {"method": quantization},
            "adapter": {
                "method": "dora" if dora else "lora",
                "rank": rank,
                "alpha": 2 * rank,
                "target_modules": target_modules,
                "modules_to_save": list(modules_to_save),
            },
            "data": data,
            "output": {"dir": str(root)},
        }
    )
    loaded = load_model(recipe.model, recipe.quantization)
    torch.manual_seed(1)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=target_modules,
        use_dora=dora,
        modules_to_save=list(modules_to_save) or None,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(loaded.model, config)
    run = root / name
    model.save_pretrained(run / A.ADAPTER_DIR)
    loaded.tokenizer.save_pretrained(run / A.ADAPTER_DIR)
    cfg = model.get_base_model().config.to_dict()
    manifest = {
        "name": name,
        "task": {"type": "sft", "mode": "generative", "labels": []},
        "base_model": {
            "name_or_path": str(base),
            "hub_id": None,
            "revision": None,
            "resolved_path": str(base),
            "kind": "local",
            "model_type": cfg["model_type"],
            "architectures": cfg["architectures"],
            "auto_class": "AutoModelForCausalLM",
            "config_sha256": config_sha256(cfg),
            "tokenizer_sha256": tokenizer_sha256(base),
            "trust_remote_code": False,
        },
        "quantization": recipe.quantization.model_dump(mode="json"),
        "adapter": {
            "method": recipe.adapter.method,
            "rank": rank,
            "alpha": 2 * rank,
            "target_modules": target_modules,
            "modules_to_save": list(modules_to_save),
        },
    }
    A.atomic_write_json(run / A.MANIFEST, manifest)
    A.atomic_write_text(run / A.RESOLVED_RECIPE, dump_recipe(recipe))
    A.atomic_write_json(run / A.METRICS, {})
    return run


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory, tiny_llama_dir) -> Path:
    return make_run(
        tmp_path_factory.mktemp("runs"),
        tiny_llama_dir,
        test_rows=[{"prompt": p, "completion": " ok"} for p in PROMPTS],
    )


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def copy_adapter_run(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest)
    return dest


# --- merge ------------------------------------------------------------------------------------


def test_llama_merge_fp32_equals_base_plus_adapter(llama_run, tmp_path):
    out = tmp_path / "merged"
    report = merge_run(llama_run, out, dtype="fp32")
    print("llama fp32:", {k: report[k]["max_logit_diff"] for k in ("merge", "saved", "adapter_effect")})
    assert report["merge"]["max_logit_diff"] < 1e-4 and report["saved"]["max_logit_diff"] < 1e-4
    assert report["merge"]["greedy_agreement"] == 1.0 and report["merge"]["mean_kl"] < 1e-8
    assert report["adapter_effect"]["max_logit_diff"] > 1e-2  # the adapter does change the model
    assert report["prompts"] == {
        "source": "test_file",
        "path": str(llama_run.parent / "test.jsonl"),
        "count": 2,
        "note": None,
    }
    assert report["qlora_gap"] is None and report["base"]["checked"]["config_sha256"] == "ok"
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        A.MERGE_VERIFICATION,
    } <= names
    assert any(n.endswith(".safetensors") for n in names) and not any("adapter" in n for n in names)
    assert json.loads((out / A.MERGE_VERIFICATION).read_text())["passed"] is True
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_qwen2_merge_bf16_keeps_chat_template_and_unties_an_adapted_head(tmp_path, tiny_qwen2_dir):
    """Qwen2 ties lm_head to embed_tokens: merging a LoRA on lm_head must not leak into the embeddings."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = make_run(tmp_path, tiny_qwen2_dir, target_modules=["q_proj", "v_proj", "lm_head"])
    out = tmp_path / "merged"
    report = merge_run(run, out, max_shard_size="100KB")  # bf16 by default; several shards
    print("qwen2 bf16:", {k: report[k]["max_logit_diff"] for k in ("merge", "saved", "adapter_effect")})
    assert report["merge"]["max_logit_diff"] < 1e-4
    assert 0 < report["saved"]["max_logit_diff"] < report["adapter_effect"]["max_logit_diff"]
    assert report["prompts"]["source"] == "builtin"
    assert len(list(out.glob("*.safetensors"))) > 1 and (out / "model.safetensors.index.json").is_file()
    assert (
        AutoTokenizer.from_pretrained(out).chat_template
        == AutoTokenizer.from_pretrained(tiny_qwen2_dir).chat_template
    )
    assert (out / "generation_config.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(out)
    assert report["untied_embeddings"] and not model.config.tie_word_embeddings
    assert model.dtype == torch.bfloat16 and model.lm_head.weight is not model.model.embed_tokens.weight


def test_qlora_adapter_merges_unquantized_and_reports_gap(tmp_path, tiny_llama_dir):
    run = make_run(
        tmp_path, tiny_llama_dir, quantization="nf4", target_modules=["q_proj", "v_proj", "down_proj"]
    )
    report = merge_run(run, tmp_path / "merged", dtype="fp32", prompts=PROMPTS)
    gap = report["qlora_gap"]
    print("qlora:", report["merge"]["max_logit_diff"], gap)
    assert report["merge"]["max_logit_diff"] < 1e-4
    assert gap["available"] and gap["max_logit_diff"] > 1e-3 and gap["mean_kl"] > 0
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert "quantization_config" not in config


def test_merge_refuses_a_different_base(llama_run, tmp_path, tiny_qwen2_dir):
    other = build_tiny_causal_lm("llama", tmp_path / "llama-3-layers", layers=3)
    with pytest.raises(LoraAdaptError, match="config_sha256 differs") as err:
        merge_run(llama_run, tmp_path / "merged", base=other)
    assert err.value.exit_code == 2 and not (tmp_path / "merged").exists()
    result = invoke("merge", llama_run, "--out", tmp_path / "m2", "--base", tiny_qwen2_dir)
    assert result.exit_code == 2 and "model_type differs" in result.output


def test_merge_refuses_a_quantized_base(llama_run, tmp_path, tiny_llama_dir):
    import shutil

    quantized = tmp_path / "quantized-base"
    shutil.copytree(tiny_llama_dir, quantized)
    config = json.loads((quantized / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (quantized / "config.json").write_text(json.dumps(config))
    result = invoke("merge", llama_run, "--out", tmp_path / "merged", "--base", quantized)
    assert result.exit_code == 2 and "quantized checkpoint" in result.output
    assert not (tmp_path / "merged").exists()


def test_failed_verification_writes_nothing(llama_run, tmp_path):
    result = invoke(
        "merge", llama_run, "--out", tmp_path / "merged", "--dtype", "fp32", "--max-logit-diff", "0"
    )
    assert result.exit_code == 1 and "merge verification failed" in result.output
    assert list(tmp_path.iterdir()) == []


def test_merge_cli_prints_the_verification(llama_run, tmp_path):
    result = invoke("merge", llama_run, "--out", tmp_path / "merged", "--dtype", "fp32")
    assert result.exit_code == 0, result.output
    assert "merge: max |logit diff|" in result.output and "adapter_effect:" in result.output
    again = invoke("merge", llama_run, "--out", tmp_path / "merged")
    assert again.exit_code == 2 and "already exists" in again.output


def test_not_a_finished_run_is_a_usage_error(tmp_path):
    (tmp_path / "run.incomplete" / A.ADAPTER_DIR).mkdir(parents=True)
    for command in (["merge"], ["export", "--target", "peft"]):
        result = invoke(*command, tmp_path / "run.incomplete", "--out", tmp_path / "out")
        assert result.exit_code == 2 and "not a finished run" in result.output


# --- adapter checks -----------------------------------------------------------------------------


def test_check_adapter_weights_stats(llama_run):
    stats = check_adapter_weights(llama_run / A.ADAPTER_DIR)
    assert stats["n_lora_pairs"] == 14 and stats["zero_b_pairs"] == 0 and stats["b_norm"]["min"] > 0


def test_all_zero_b_adapter_is_refused(llama_run, tmp_path):
    run = copy_adapter_run(llama_run, tmp_path / "zero")
    weights = run / A.ADAPTER_DIR / A.ADAPTER_WEIGHTS
    tensors = load_file(weights)
    save_file({k: torch.zeros_like(v) if ".lora_B." in k else v for k, v in tensors.items()}, weights)
    with pytest.raises(LoraAdaptError, match="untrained: all 14 lora_B"):
        check_adapter_weights(run / A.ADAPTER_DIR)
    with pytest.raises(LoraAdaptError, match="untrained"):
        export_run(run, tmp_path / "out", target="peft")
    result = invoke("export", run, "--target", "vllm", "--out", tmp_path / "out")
    assert result.exit_code == 1 and "untrained" in result.output and not (tmp_path / "out").exists()


def test_missing_tensors_are_refused(llama_run, tmp_path):
    run = copy_adapter_run(llama_run, tmp_path / "missing")
    weights = run / A.ADAPTER_DIR / A.ADAPTER_WEIGHTS
    tensors = load_file(weights)
    save_file({k: v for k, v in tensors.items() if "layers.1.mlp.up_proj" not in k}, weights)
    with pytest.raises(LoraAdaptError, match="missing LoRA tensors for target module"):
        check_adapter_weights(run / A.ADAPTER_DIR)
    (run / A.ADAPTER_DIR / A.ADAPTER_WEIGHTS).unlink()
    with pytest.raises(LoraAdaptError, match="no adapter_model.safetensors"):
        check_adapter_weights(run / A.ADAPTER_DIR)


# --- export -------------------------------------------------------------------------------------


def test_peft_and_vllm_exports_of_a_plain_lora(llama_run, tmp_path):
    report = export_run(llama_run, tmp_path / "peft", target="peft")
    assert report["issues"] == [] and {p.name for p in (tmp_path / "peft").iterdir()} == {
        A.ADAPTER_CONFIG,
        A.ADAPTER_WEIGHTS,
        "tokenizer.json",
        "tokenizer_config.json",
        A.EXPORT_REPORT,
    }
    result = invoke("export", llama_run, "--target", "vllm", "--out", tmp_path / "vllm")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "vllm" / A.EXPORT_REPORT).read_text())
    assert [i for i in report["issues"] if i["severity"] == "reject"] == [] and "--enable-lora" in report[
        "serve"
    ]


def test_vllm_export_flags_dora_rank_and_modules_to_save(tmp_path, tiny_llama_dir):
    run = make_run(
        tmp_path,
        tiny_llama_dir,
        rank=512,
        dora=True,
        modules_to_save=("lm_head",),
        target_modules=["q_proj", "v_proj"],
    )
    result = invoke("export", run, "--target", "vllm", "--out", tmp_path / "vllm")
    assert result.exit_code == 2 and not (tmp_path / "vllm").exists()
    for words in (
        "DoRA",
        "rank 512 is greater than max_lora_rank 16",
        "--max-lora-rank 512",
        "modules_to_save ['lm_head']",
    ):
        assert words in result.output, words
    report = export_run(run, tmp_path / "vllm", target="vllm", force=True)
    assert (
        check_adapter_weights(run / A.ADAPTER_DIR)["magnitude_vectors"] == 4
    )  # DoRA passes the weight check
    checks = {i["check"]: i["severity"] for i in report["issues"]}
    assert checks == {"rank": "reject", "dora": "reject", "modules_to_save": "reject"}
    assert report["forced"] and (tmp_path / "vllm" / A.ADAPTER_WEIGHTS).is_file()
    declared = export_run(
        run, tmp_path / "vllm", target="vllm", force=True, max_lora_rank=512, overwrite=True
    )
    assert (
        "rank" not in {i["check"] for i in declared["issues"]} and "--max-lora-rank 512" in declared["serve"]
    )


KILLED_MID_WRITE = """
import os, signal, sys
from pathlib import Path
from lora_adapt import artifacts as A

with A.staged_output(Path(sys.argv[1]), overwrite=False) as stage:
    (stage / "adapter_model.safetensors").write_bytes(b"half")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_next_export_removes_the_partial_folder_a_killed_one_left_and_only_that(llama_run, tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "peft"
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(out)], env=env, capture_output=True)
    assert killed.returncode == -9, killed.stderr
    (left,) = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    result = invoke("export", llama_run, "--target", "peft", "--out", out)
    assert result.exit_code == 0, result.output
    assert not left.exists() and (out / A.ADAPTER_WEIGHTS).is_file()
    owner = left.name.removeprefix(".peft.").split("-")  # .peft.<host>-<pid>-<random>.partial
    here, dead = owner[0], int(owner[1])
    assert f"removed {left}, left by an earlier command that was stopped (process {dead})" in result.output

    kept = [
        tmp_path / f".peft.{here}-{os.getppid()}-abcd1234.partial",  # a process still running here
        tmp_path
        / f".peft.{'0' * 8 if here != '0' * 8 else '1' * 8}-{dead}-abcd1234.partial",  # another machine
        tmp_path / f".peft2.{here}-{dead}-abcd1234.partial",  # another target
        tmp_path / ".peft.k3j4h5g6.partial",  # an older lora-adapt's: no owner in its name
    ]
    for folder in kept:
        folder.mkdir()
    again = invoke("export", llama_run, "--target", "peft", "--out", out, "--overwrite")
    assert again.exit_code == 0, again.output
    assert f"{kept[3]} is an unfinished output of an older lora-adapt, left in place" in again.output
    assert "removed" not in again.output and all(folder.is_dir() for folder in kept)
    assert sorted(p for p in tmp_path.iterdir() if p.name.endswith(".partial")) == sorted(kept)
