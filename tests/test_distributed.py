"""Runs on several processes: two CPU processes over gloo, tiny models.

- the reported bug: `torchrun --nproc_per_node 2 lora-adapt run` gives one complete run directory, and its
  adapter matches a one-process run of the same global batch and seed;
- a process that fails fails the run on every process, with its message, and nothing looks finished;
- the agreement between processes (``distributed.Ranks``), each process's exit code and output;
- the FSDP / DeepSpeed / QLoRA configuration each strategy builds, and the launch checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import cli, instruction_rows, sft_recipe, write_jsonl

from lora_adapt import artifacts as A
from lora_adapt.distributed import check_launch, missing_packages
from lora_adapt.errors import RecipeError
from lora_adapt.launcher import free_port
from lora_adapt.recipe import load_recipe, recipe_from_dict

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
# DDP averages two processes' gradients where one process accumulates two micro-batches: at most float32
# rounding in another reduction order. Measured here: 0.0 (bit-identical adapters; largest weight 0.128,
# largest lora_B 0.010 after 4 steps), so the tolerance only leaves room for other machines' reductions.
ADAPTER_TOLERANCE = 1e-6


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def _pair(args: list[str], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Start two processes as a launcher would (without one that stops the others), wait for both."""
    port = str(free_port())
    procs = []
    for rank in (0, 1):
        env = _env(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            LOCAL_WORLD_SIZE="2",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, *args],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def _scenario(name: str, tmp_path: Path, *options: str) -> list[subprocess.CompletedProcess]:
    return _pair([str(TESTS / "rank_scenarios.py"), name, str(tmp_path), *options], tmp_path)


def _errors(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


# --- the agreement between processes ---------------------------------------------------------------


def test_main_failing_while_preparing_stops_every_process_with_its_error(tmp_path):
    main, other = _scenario("main-fails-preparing", tmp_path)
    assert (main.returncode, other.returncode) == (2, 2)  # DataError's code, on both
    assert _errors(main) == ["error: data.jsonl:3: bad row"]
    assert _errors(other) == []  # printed once, by the main process
    assert "went on" not in main.stdout + other.stdout


def test_rank_failing_inside_collective_work_stops_the_others_with_its_message(tmp_path):
    main, other = _scenario("rank1-fails-training", tmp_path)
    expected = "error: rank 1 of 2 failed while training: RuntimeError: index out of range on rank 1"
    assert (main.returncode, other.returncode) == (1, 1)
    assert _errors(other) == [expected]  # the failing process says it as it leaves
    assert _errors(main) == [expected]  # and the main one, whose all-reduce failed, read it from the store


def test_rank_failing_its_own_preparation_is_reported_by_the_main_process(tmp_path):
    main, other = _scenario("rank1-fails-preparing", tmp_path)
    assert (main.returncode, other.returncode) == (1, 1)
    assert _errors(main) == [
        "error: rank 1 of 2 failed while loading the model and data: ValueError: rank 1 data"
    ]
    assert _errors(other) == []


def test_run_is_renamed_only_when_every_process_succeeded(tmp_path):
    main, other = _scenario("write-run", tmp_path, "--fail")
    assert (main.returncode, other.returncode) == (1, 1)
    assert _errors(main) == ["error: ValueError: evaluation failed on the main process"]
    assert not (tmp_path / "run").exists()
    assert (tmp_path / "run.incomplete" / "manifest.json").exists()  # left unfinished, never renamed


# --- whole runs -------------------------------------------------------------------------------------


def _ddp_recipe(tmp_path: Path, model_dir: Path) -> Path:
    data = write_jsonl(tmp_path / "train.jsonl", instruction_rows(48))
    # 36 training rows; 4 steps of 2 processes x 4 rows stay inside the first epoch (no padded last batch)
    return sft_recipe(tmp_path, model_dir, data, training={"max_steps": 4, "save_steps": 2})


def test_torchrun_gives_one_complete_run_that_matches_one_process(tmp_path, tiny_llama_dir):
    from safetensors.torch import load_file

    recipe = _ddp_recipe(tmp_path, tiny_llama_dir)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    launched = subprocess.run(
        [
            *torchrun,
            "--master_port",
            str(free_port()),
            shutil.which("lora-adapt") or "lora-adapt",
            "run",
            str(recipe),
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["tiny"]  # one run, nothing unfinished beside it
    assert {p.name for p in (runs / "tiny").iterdir()} == A.RUN_FILES
    assert launched.stdout.count("run finished:") == 1  # the main process reports; the other stays quiet
    runtime = A.read_json(runs / "tiny" / A.MANIFEST)["runtime"]
    assert (runtime["world_size"], runtime["effective_batch_size"], runtime["strategy"]) == (2, 8, "ddp")

    # one process, the same global batch of 8 (4 rows x 2 accumulated micro-batches), the same seed
    cli("run", str(recipe), "--set", "name=single", "--set", "training.gradient_accumulation_steps=2")
    single = A.read_json(runs / "single" / A.MANIFEST)["runtime"]
    assert (single["world_size"], single["effective_batch_size"]) == (1, 8)
    ddp = load_file(runs / "tiny" / A.ADAPTER_DIR / A.ADAPTER_WEIGHTS)
    one = load_file(runs / "single" / A.ADAPTER_DIR / A.ADAPTER_WEIGHTS)
    assert ddp.keys() == one.keys()
    difference = max(float((ddp[k] - one[k]).abs().max()) for k in ddp)
    trained = max(float((one[k]).abs().max()) for k in one if "lora_B" in k)
    assert trained > 1e-3  # the adapters trained (lora_B starts at zero) ...
    assert difference < ADAPTER_TOLERANCE  # ... and the same way on one and on two processes


def test_a_rank_failing_on_its_share_of_the_data_fails_the_whole_run(tmp_path):
    """A row too long for the model's 32 positions reaches one process's batch only (the data is split
    between processes): that process fails inside training; the run fails everywhere, exit 1."""
    from tiny_models import build_tiny_gpt2

    model = build_tiny_gpt2(tmp_path / "gpt2", positions=32)
    rows = instruction_rows(16)
    rows.insert(
        5, {"instruction": "Summarise.", "input": " ".join(f"w{i}" for i in range(40)), "output": "Long."}
    )
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    recipe = sft_recipe(
        tmp_path,
        model,
        data,
        data={"path": str(data), "max_seq_length": 256, "split": {"validation": 0.0, "test": 0.0}},
        training={"max_steps": 5, "batch_size": 2, "save_steps": 100},
    )
    launched = subprocess.run(
        [sys.executable, "-m", "lora_adapt", "run", str(recipe), "--num-processes", "2"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = launched.stdout + launched.stderr
    assert launched.returncode == 1, output[-3000:]
    assert "IndexError: index out of range in self" in output
    assert "run finished" not in output
    runs = tmp_path / "runs"
    assert not (runs / "tiny").exists()  # nothing looks finished
    assert (runs / "tiny.incomplete").is_dir()


# --- configuration per strategy ---------------------------------------------------------------------


def _recipe(**sections):
    base = {"name": "r", "model": {"name_or_path": "m"}, "data": {"path": "d.jsonl"}}
    return recipe_from_dict({**base, **sections})


def test_fsdp_recipe_builds_accelerates_fsdp2_plugin_with_the_recipes_precision(
    tmp_path, monkeypatch, tiny_llama_dir
):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from transformers import TrainingArguments

    from lora_adapt.modeling import attach_adapter, load_model
    from lora_adapt.training import strategy_args

    monkeypatch.delenv("FSDP_CPU_RAM_EFFICIENT_LOADING", raising=False)
    r = _recipe(
        distributed={"strategy": "fsdp", "fsdp": {"sharding": "shard_grad_op", "cpu_offload": True}},
        training={"precision": "bf16"},
        adapter={"rank": 4},
    )
    assert strategy_args(r.distributed, world_size=1) == {}  # one process: plain training
    args = TrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, bf16=True, **strategy_args(r.distributed, world_size=2)
    )
    plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
    plugin.set_mixed_precision(args.mixed_precision)  # as accelerate's state does with the Trainer's flags
    assert plugin.fsdp_version == 2
    assert plugin.reshard_after_forward is False  # shard_grad_op
    assert plugin.cpu_ram_efficient_loading is True
    assert plugin.activation_checkpointing is False
    assert type(plugin.cpu_offload).__name__ == "CPUOffloadPolicy"
    assert str(plugin.mixed_precision_policy.param_dtype) == "torch.bfloat16"
    assert str(plugin.state_dict_type) == "StateDictType.FULL_STATE_DICT"
    # each decoder layer, with the LoRA layers inside it, is one FSDP unit
    model = attach_adapter(
        load_model(r.model.model_copy(update={"name_or_path": str(tiny_llama_dir)}), r.quantization),
        r.adapter,
    )
    plugin.set_auto_wrap_policy(model)
    layer_classes = plugin.auto_wrap_policy.keywords["transformer_layer_cls"]
    assert {c.__name__ for c in layer_classes} == {"LlamaDecoderLayer"}
    layers = [m for m in model.modules() if type(m).__name__ == "LlamaDecoderLayer"]
    assert layers and all(any("lora_A" in n for n, _ in layer.named_parameters()) for layer in layers)


def test_sharded_qlora_keeps_one_float_dtype_for_fsdp(tiny_llama_dir):
    """FSDP + QLoRA: the 4-bit weights are stored in the compute dtype and nothing is upcast to fp32, so
    every base tensor FSDP shards is bf16; without sharding they are uint8 and the norms fp32."""
    from lora_adapt.modeling import attach_adapter, load_model
    from lora_adapt.recipe.schema import AdapterSpec, ModelSpec, QuantizationSpec

    spec = ModelSpec(name_or_path=str(tiny_llama_dir), dtype="bf16", device="cpu")
    quant = QuantizationSpec(method="nf4")

    def base_dtypes(sharded: bool) -> set[str]:
        model = attach_adapter(load_model(spec, quant, sharded=sharded), AdapterSpec(rank=4))
        return {str(p.dtype) for n, p in model.named_parameters() if "lora_" not in n}

    assert base_dtypes(sharded=True) == {"torch.bfloat16"}
    assert base_dtypes(sharded=False) == {"torch.uint8", "torch.float32"}


def test_deepspeed_config_leaves_batch_and_precision_to_the_recipe():
    from lora_adapt.training import strategy_args

    r = _recipe(
        distributed={"strategy": "deepspeed", "deepspeed": {"stage": 3, "offload_optimizer": True}},
        model={"name_or_path": "m", "device": "cuda"},
    )
    config = strategy_args(r.distributed, world_size=2)["deepspeed"]
    zero = config["zero_optimization"]
    assert (zero["stage"], zero["offload_optimizer"]["device"]) == (3, "cpu")
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert "offload_param" not in zero
    assert config["optimizer"]["type"] == "AdamW"  # DeepSpeed's CPU AdamW steps the offloaded state
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert config[key] == "auto"  # filled by the Trainer from the recipe
    assert config["bf16"] == {"enabled": "auto"} and config["fp16"] == {"enabled": "auto"}


def test_deepspeed_trainer_arguments_follow_the_recipe(tmp_path):
    pytest.importorskip("deepspeed", reason="deepspeed is not installed (it needs CUDA to build its ops)")
    from transformers import TrainingArguments

    from lora_adapt.training import strategy_args

    r = _recipe(distributed={"strategy": "deepspeed"}, model={"name_or_path": "m", "device": "cuda"})
    args = TrainingArguments(
        output_dir=str(tmp_path), bf16=True, **strategy_args(r.distributed, world_size=2)
    )
    assert args.hf_deepspeed_config.config["bf16"]["enabled"] is True


@pytest.mark.parametrize(
    ("sections", "fragment"),
    [
        ({"distributed": {"fsdp": {"cpu_offload": True}}}, "distributed.fsdp applies to strategy 'fsdp'"),
        ({"distributed": {"strategy": "fsdp"}, "quantization": {"method": "int8"}}, "cannot shard 8-bit"),
        (
            {
                "distributed": {"strategy": "fsdp"},
                "model": {"name_or_path": "m", "dtype": "bf16"},
                "quantization": {"method": "nf4", "compute_dtype": "fp16"},
            },
            "model.dtype (bf16) must equal quantization.compute_dtype (fp16)",
        ),
        (
            {
                "distributed": {"strategy": "fsdp", "fsdp": {"activation_checkpointing": True}},
                "training": {"gradient_checkpointing": True},
            },
            "keep only distributed.fsdp.activation_checkpointing",
        ),
        (
            {"distributed": {"strategy": "deepspeed"}, "model": {"name_or_path": "m", "device": "cpu"}},
            "ZeRO needs GPUs",
        ),
        (
            {"distributed": {"strategy": "deepspeed", "deepspeed": {"offload_parameters": True}}},
            "needs stage 3",
        ),
        (
            {"distributed": {"strategy": "fsdp"}, "task": {"type": "classification"}},
            "set evaluation.enabled: false and score the run afterwards",
        ),
    ],
)
def test_recipe_refuses_what_a_strategy_cannot_run(sections, fragment):
    with pytest.raises(RecipeError) as caught:
        _recipe(**sections)
    assert fragment in caught.value.message


def test_launch_checks_refuse_what_the_machine_or_launcher_cannot_run(monkeypatch):
    def problems(recipe, device="cpu", dtype="fp32", precision="fp32") -> str:
        with pytest.raises(RecipeError) as caught:
            check_launch(recipe, device=device, world_size=2, dtype=dtype, precision=precision)
        return caught.value.message

    assert "would silently fall back to DDP" in problems(_recipe(distributed={"strategy": "fsdp"}))
    fsdp_qlora = _recipe(
        distributed={"strategy": "fsdp"}, quantization={"method": "nf4", "compute_dtype": "bf16"}
    )
    assert "equal to the model's dtype on this machine (fp16)" in problems(
        fsdp_qlora, device="cuda", dtype="fp16"
    )
    assert "only 0 CUDA GPU(s)" in problems(_recipe(), device="cuda")  # no GPU here
    assert "adapter.bias 'all'" in problems(_recipe(adapter={"bias": "all"}))
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert "asks for FSDP" in problems(_recipe())
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert "trains in fp32 (training.precision)" in problems(_recipe())
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    check_launch(_recipe(), device="cpu", world_size=2, dtype="fp32", precision="fp32")  # DDP on CPUs is fine


def test_validate_says_when_deepspeed_is_not_installed_here(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "r",
                "model": {"name_or_path": "m", "device": "cuda"},
                "data": {"path": "d.jsonl"},
                "distributed": {"strategy": "deepspeed"},
            }
        )
    )
    result = cli("validate", str(path))
    assert result.exit_code == 0
    if missing_packages(load_recipe(path)):
        assert "needs the deepspeed package, which is not installed here" in result.output


def test_num_processes_inside_a_launch_is_refused(tmp_path, monkeypatch, tiny_llama_dir):
    recipe = sft_recipe(tmp_path, tiny_llama_dir, write_jsonl(tmp_path / "d.jsonl", instruction_rows(8)))
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = cli("run", str(recipe), "--num-processes", "2")
    assert result.exit_code == 2
    assert "inside a distributed launch" in result.output


def test_deepspeed_optimizer_offload_refuses_learning_rates_per_role():
    """DeepSpeed builds the offloaded optimizer from its config (one rate): a head's 10x rate or LoRA+
    would be dropped silently, so the recipe is refused before any process starts."""
    offload = {"strategy": "deepspeed", "deepspeed": {"offload_optimizer": True}}
    gpu = {"name_or_path": "m", "device": "cuda"}
    head = {"type": "classification", "mode": "head"}
    with pytest.raises(RecipeError, match=r"training.head_lr_ratio \(10"):
        _recipe(distributed=offload, model=gpu, task=head)
    with pytest.raises(RecipeError, match="lora_plus_ratio"):
        _recipe(distributed=offload, model=gpu, training={"lora_plus_ratio": 16})
    _recipe(distributed=offload, model=gpu, task=head, training={"head_lr_ratio": 1})  # one rate: runs
    _recipe(distributed=offload, model=gpu)  # SFT: no head
