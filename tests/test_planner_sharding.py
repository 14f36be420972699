"""The planner per GPU: what each strategy divides by the number of GPUs, checked against the same
term-by-term arithmetic the one-GPU estimate uses (built-in Llama shapes on the meta device, no weights)."""

from __future__ import annotations

import math

import pytest
from helpers import cli, plan_recipe

from lora_adapt.planner import Estimator, settings_for
from lora_adapt.planner.settings import vary
from lora_adapt.planner.shapes import shape_config
from lora_adapt.recipe import recipe_from_dict

SHARDED = ("weights", "quantized_weights", "adapter", "gradients", "optimizer_states", "optimizer_step")
NOT_DIVIDED = ("quant_constants", "autocast_copies", "activations", "checkpoint_recompute", "logits_loss")


@pytest.fixture(scope="module")
def estimator() -> Estimator:
    return Estimator(shape_config("llama-1b"))


def _recipe(**sections):
    base = {
        "name": "p",
        "model": {"name_or_path": "llama-1b", "dtype": "bf16"},
        "data": {"path": "d.jsonl", "max_seq_length": 512},
        "training": {"batch_size": 2, "precision": "bf16"},
    }
    return recipe_from_dict({**base, **sections})


def _layer_and_head_bytes(estimator: Estimator, st) -> tuple[int, int]:
    """One decoder layer's parameters as stored (bf16 base; LoRA A/B in fp32, or bf16 under QLoRA where TRL
    casts them; 4-bit weights half a byte each) and the bf16 output head."""
    sk = estimator.skeleton(st)
    lora_bytes = 2 if st.quantization != "none" else 4
    layer = 0.0
    for t in sk.tensors:
        if not t.name.startswith("model.layers.0."):
            continue
        if t.is_adapter:
            layer += t.numel * lora_bytes
        elif t.quantized and st.quantization != "none":
            layer += math.ceil(t.numel * 0.5)
        else:
            layer += t.numel * 2
    return int(layer), sk.output_head_numel * 2


@pytest.mark.parametrize("mode", ["lora", "qlora"])
def test_fsdp_divides_parameters_gradients_and_optimizer_state_by_the_gpus(estimator, mode):
    recipe = _recipe()
    four = settings_for(recipe, mode, num_gpus=4, strategy="fsdp")
    # a sharded QLoRA is not prepared for k-bit training (no fp32 upcast): compare with the same job on one GPU
    one = vary(settings_for(recipe, mode), upcast_unquantized=False)
    assert four.upcast_unquantized is False
    e1, e4 = estimator(one), estimator(four)
    for key in SHARDED:
        assert e4.terms[key] == math.ceil(e1.terms[key] / 4), key
    for key in NOT_DIVIDED:
        assert e4.terms[key] == e1.terms[key], key
    layer, head = _layer_and_head_bytes(estimator, four)
    assert e4.terms["gathered_layers"] == 2 * layer + head
    static = sum(
        e4.terms[k]
        for k in ("weights", "quantized_weights", "quant_constants", "adapter", "optimizer_states")
    )
    forward = static + e4.terms["autocast_copies"] + e4.terms["activations"] + e4.terms["gathered_layers"]
    assert e4.phases["loss"] == forward + e4.terms["logits_loss"]
    assert e4.peak == max(e4.phases.values()) + sum(e4.overhead.values())
    assert e4.peak < e1.peak


def test_ddp_copies_everything_and_adds_gradient_buckets(estimator):
    recipe = _recipe()
    one, two = estimator(settings_for(recipe, "lora")), estimator(settings_for(recipe, "lora", num_gpus=2))
    assert all(two.terms[k] == one.terms[k] for k in one.terms)
    assert two.terms["ddp_buckets"] == one.terms["gradients"]


def test_zero_stages_divide_what_they_shard_and_offload_moves_it_off_the_gpu(estimator):
    stage2 = _recipe(distributed={"strategy": "deepspeed", "deepspeed": {"stage": 2}})
    one = estimator(settings_for(stage2, "lora"))
    two = estimator(settings_for(stage2, "lora", num_gpus=2))
    assert two.terms["gradients"] == math.ceil(one.terms["gradients"] / 2)
    assert two.terms["optimizer_states"] == math.ceil(one.terms["optimizer_states"] / 2)
    assert two.terms["weights"] == one.terms["weights"] and "gathered_layers" not in two.terms
    offload = _recipe(distributed={"strategy": "deepspeed", "deepspeed": {"offload_optimizer": True}})
    moved = estimator(settings_for(offload, "lora", num_gpus=2))
    assert moved.terms["optimizer_states"] == 0 and moved.terms["optimizer_step"] == 0


def test_plan_command_reports_per_gpu_and_suggests_sharding(tmp_path):
    recipe = plan_recipe(tmp_path, "llama-1b", training={"batch_size": 2})
    result = cli("plan", str(recipe), "--num-gpus", "2", "--gpu-memory", "4GiB", "--modes", "lora")
    assert result.exit_code == 0, result.output
    assert "on each of 2 GPUs (ddp)" in result.output
    assert "--set distributed.strategy=fsdp" in result.output  # shard what DDP copies
    sharded = cli(
        "plan",
        str(recipe),
        "--num-gpus",
        "2",
        "--strategy",
        "fsdp",
        "--gpu-memory",
        "2GiB",
        "--modes",
        "lora",
    )
    assert "on each of 2 GPUs (fsdp)" in sharded.output
    assert "gathered layers (sharded)" in sharded.output
    assert "spread the job over 4 GPUs" in sharded.output
    assert "--set distributed.fsdp.cpu_offload=true" in sharded.output


def test_fsdp_activation_checkpointing_is_checkpointing_and_the_advice_names_it(tmp_path):
    """FSDP's activation checkpointing replaces training.gradient_checkpointing (the recipe refuses both):
    the planner counts it as checkpointing, and suggests it (not the refused key) when it is off."""
    fsdp = {"strategy": "fsdp", "fsdp": {"activation_checkpointing": True}}
    on = settings_for(_recipe(distributed=fsdp), "lora", num_gpus=2)
    off = settings_for(_recipe(distributed={"strategy": "fsdp"}), "lora", num_gpus=2)
    assert on.gradient_checkpointing and not off.gradient_checkpointing
    recipe = plan_recipe(tmp_path, "llama-1b", training={"batch_size": 8}, distributed={"strategy": "fsdp"})
    advice = cli("plan", str(recipe), "--num-gpus", "2", "--gpu-memory", "4GiB", "--modes", "lora")
    assert "--set distributed.fsdp.activation_checkpointing=true" in advice.output
    assert "training.gradient_checkpointing=true" not in advice.output
