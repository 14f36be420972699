"""Packed rows kept apart (training/packing.py): the same tokens, labels and per-document positions as TRL's
one-row padding-free batch, the same loss and gradients, real tokens counted without the padding, and the
trainer choosing the layout by attention implementation."""

from __future__ import annotations

import pytest
import torch
from helpers import instruction_rows, sft_recipe, write_jsonl

from lora_adapt.recipe.derived import keeps_packed_rows_apart
from lora_adapt.training.packing import PACKED_TOKENS, PackedRowsCollator, row_positions

PAD = 0


def packed_examples(seed: int = 0, vocab: int = 200) -> list[dict]:
    """Three packed rows as TRL's bfd packing leaves them: documents of several lengths, rows of unequal
    length, labels with a masked prompt."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for documents in ([5, 9, 4], [12, 3], [7]):
        size = sum(documents)
        ids = torch.randint(3, vocab, (size,), generator=g).tolist()
        labels = list(ids)
        labels[:2] = [-100, -100]  # a prompt at the start of the first document
        out.append({"input_ids": ids, "labels": labels, "seq_lengths": documents})
    return out


def one_row(examples: list[dict]) -> dict:
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=PAD, padding_free=True)(examples)


def test_rows_hold_the_same_tokens_labels_and_positions_as_trls_single_row():
    examples = packed_examples()
    ours = PackedRowsCollator(pad_token_id=PAD)(examples)
    trl = one_row(examples)
    assert ours["input_ids"].shape == (3, 18) and "attention_mask" not in ours
    assert int(ours[PACKED_TOKENS]) == 18 + 15 + 7 == trl["input_ids"].numel()
    real = torch.zeros_like(ours["input_ids"], dtype=torch.bool)
    for i, e in enumerate(examples):
        real[i, : len(e["input_ids"])] = True
    for key in ("input_ids", "labels", "position_ids"):
        assert ours[key][real].tolist() == trl[key][0].tolist(), key
    # padding: the pad token, never scored, positions continuing the row's last document
    assert ours["input_ids"][~real].eq(PAD).all() and ours["labels"][~real].eq(-100).all()
    assert ours["position_ids"][1, 15:].tolist() == [3, 4, 5]
    assert ours["position_ids"][2].tolist() == list(range(18))
    # each document's first token is unscored, as in TRL's layout
    assert ours["labels"][0, [0, 5, 14]].eq(-100).all()


def test_padding_to_a_multiple_and_inconsistent_rows():
    examples = packed_examples()
    batch = PackedRowsCollator(pad_token_id=PAD, pad_to_multiple_of=8)(examples)
    assert batch["input_ids"].shape == (3, 24)
    assert row_positions([2, 3], 7).tolist() == [0, 1, 0, 1, 2, 3, 4]
    bad = [{"input_ids": [5, 6, 7], "seq_lengths": [2]}]
    with pytest.raises(ValueError, match="lists documents of 2"):
        PackedRowsCollator(pad_token_id=PAD)(bad)


def test_flash_attention_keeps_trls_single_row():
    assert (
        keeps_packed_rows_apart("sdpa") and keeps_packed_rows_apart("eager") and keeps_packed_rows_apart(None)
    )
    assert not keeps_packed_rows_apart("flash_attention_2") and not keeps_packed_rows_apart(
        "flash_attention_3"
    )


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_loss_and_gradients_equal_the_single_row_layout(attention, tiny_llama_dir):
    """Documents never see each other in either layout, so the loss and every gradient are the same."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lora_adapt.training.chunked_loss import chunked_lm_loss
    from lora_adapt.training.lm_loss import decoder_output

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(
        tiny_llama_dir, dtype=torch.float32, attn_implementation=attention
    )
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    examples = packed_examples(vocab=base.config.vocab_size)

    def loss_and_grads(batch):
        model.zero_grad(set_to_none=True)
        inputs = {k: batch[k] for k in ("input_ids", "labels", "position_ids")}
        hidden, head = decoder_output(model, model, inputs)
        stats = chunked_lm_loss(hidden, head.weight, head.bias, inputs["labels"])
        stats.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return stats, grads

    single, single_grads = loss_and_grads(one_row(examples))
    apart, apart_grads = loss_and_grads(PackedRowsCollator(pad_token_id=PAD)(examples))
    assert (
        int(apart.tokens) == int(single.tokens) == 40 - 6 - 3
    )  # less the prompts and the later documents' first tokens
    torch.testing.assert_close(apart.loss, single.loss, rtol=1e-5, atol=1e-6)
    assert int(apart.correct) == int(single.correct)
    for name, grad in single_grads.items():
        torch.testing.assert_close(apart_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("loss_path", ["chunked", "trl"])
def test_the_trainer_keeps_packed_rows_apart_and_counts_real_tokens(tmp_path, tiny_llama_dir, loss_path):
    from lora_adapt.bench.probe import StepProbe
    from lora_adapt.modeling import attach_adapter
    from lora_adapt.recipe import load_recipe
    from lora_adapt.runtime import load_model_and_data, make_trainer, resolve_runtime

    data = write_jsonl(tmp_path / "d.jsonl", instruction_rows(40))
    recipe = load_recipe(
        sft_recipe(
            tmp_path, tiny_llama_dir, data, training={"max_steps": 2, "packing": True, "loss_path": loss_path}
        )
    )
    runtime = resolve_runtime(recipe)
    loaded, prepared = load_model_and_data(recipe, runtime, echo=lambda _: None)
    model = attach_adapter(loaded, recipe.adapter)
    probe = StepProbe(warmup=0, timed=2, count_flops=False)
    trainer = make_trainer(
        recipe, runtime, model, loaded.tokenizer, prepared, tmp_path / "ck", [probe], echo=lambda _: None
    )
    probe.trainer = trainer
    assert trainer.packed_rows and isinstance(trainer.data_collator, PackedRowsCollator)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    assert batch["input_ids"].shape[0] == 4 and "attention_mask" not in batch
    trainer.train()
    packed = sum(len(trainer.train_dataset[i]["input_ids"]) for i in range(len(trainer.train_dataset)))
    logged = [h for h in trainer.state.log_history if "num_tokens" in h]
    assert logged and 0 < logged[-1]["num_tokens"] <= packed
    # the probe counted real tokens, padding left out: what the trainer logged, step by step
    steps = probe.result.steps
    assert len(steps) == 2 and sum(s.tokens for s in steps) == logged[-1]["num_tokens"]
    assert all(s.tokens <= s.processed for s in steps)
    metrics = trainer.evaluate()  # the packed validation rows go through the same collator
    assert metrics["eval_loss"] > 0
