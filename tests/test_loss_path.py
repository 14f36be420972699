"""The loss path (training.loss_path): the chunked LM loss equals plain cross-entropy (value, gradients,
entropy, token accuracy), never allocates a `[tokens, vocab]` tensor, reads the decoder's output
exactly as the model's own head does, and is what the trainer runs on a CPU."""

from __future__ import annotations

import pytest
import torch
from helpers import instruction_rows, sft_recipe, write_jsonl
from torch.utils._python_dispatch import TorchDispatchMode

from lora_adapt.errors import RecipeError, UsageError
from lora_adapt.recipe import load_recipe
from lora_adapt.recipe.derived import resolve_loss_path
from lora_adapt.training.chunked_loss import TILE_ELEMENTS, chunk_tokens, chunked_lm_loss

B, S, H, V = 2, 33, 16, 101


def reference(hidden, weight, bias, labels):
    logits = (hidden @ weight.t() + (0 if bias is None else bias))[:, :-1].reshape(-1, weight.shape[0])
    targets = labels[:, 1:].reshape(-1)
    loss = torch.nn.functional.cross_entropy(logits, targets, ignore_index=-100)
    scored = logits.detach()[targets != -100]
    log_p = torch.log_softmax(scored, -1)
    entropy = -(log_p.exp() * log_p).sum()
    correct = (scored.argmax(-1) == targets[targets != -100]).sum()
    return loss, entropy, correct


def inputs(bias: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, S, H, generator=g, requires_grad=True)
    weight = torch.randn(V, H, generator=g, requires_grad=True)
    b = torch.randn(V, generator=g, requires_grad=True) if bias else None
    labels = torch.randint(0, V, (B, S), generator=g)
    labels[0, :5] = -100  # a prompt
    labels[1, -3:] = -100  # padding
    return hidden, weight, b, labels


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("chunk", [7, 64, 1000])
def test_chunked_loss_and_gradients_equal_plain_cross_entropy(bias, chunk):
    hidden, weight, b, labels = inputs(bias)
    stats = chunked_lm_loss(hidden, weight, b, labels, chunk=chunk)
    (stats.loss * 3.0).backward()  # a scaled loss (gradient accumulation) scales the stored gradients
    ours = [t.grad.clone() for t in (hidden, weight, b) if t is not None]
    for t in (hidden, weight, b):
        if t is not None:
            t.grad = None
    loss, entropy, correct = reference(hidden, weight, b, labels)
    (loss * 3.0).backward()
    theirs = [t.grad for t in (hidden, weight, b) if t is not None]
    torch.testing.assert_close(stats.loss, loss, rtol=1e-5, atol=1e-6)
    for mine, plain in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine, plain, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(stats.entropy_sum, entropy, rtol=1e-5, atol=1e-4)
    assert int(stats.correct) == int(correct)
    assert int(stats.tokens) == int((labels[:, 1:] != -100).sum())


def test_num_items_divides_the_sum_and_no_grad_computes_the_loss_alone():
    hidden, weight, _, labels = inputs(False)
    summed = chunked_lm_loss(hidden, weight, None, labels, num_items=1).loss
    mean = chunked_lm_loss(hidden, weight, None, labels).loss
    n = int((labels[:, 1:] != -100).sum())
    torch.testing.assert_close(summed / n, mean)
    with torch.no_grad():
        evaluated = chunked_lm_loss(hidden, weight, None, labels)
    assert not evaluated.loss.requires_grad
    torch.testing.assert_close(evaluated.loss, mean.detach())


class LargestTensor(TorchDispatchMode):
    """The largest number of elements of any tensor an operation returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_chunked_loss_never_allocates_the_full_logits():
    vocab, tokens = 4096, 512
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, tokens + 1, H, generator=g, requires_grad=True)
    weight = torch.randn(vocab, H, generator=g)
    labels = torch.randint(0, vocab, (1, tokens + 1), generator=g)
    chunk = 64
    with LargestTensor() as probe:
        chunked_lm_loss(hidden, weight, None, labels, chunk=chunk).loss.backward()
    assert probe.largest <= chunk * vocab < tokens * vocab
    with LargestTensor() as plain:
        reference(hidden, weight, None, labels)[0].backward()
    assert plain.largest >= tokens * vocab  # what the chunked path avoids


def test_chunk_size_follows_the_vocabulary():
    assert chunk_tokens(32000) * 32000 <= TILE_ELEMENTS
    assert chunk_tokens(128256) >= 16
    from lora_adapt.planner.activations import LOSS_TILE_ELEMENTS

    assert LOSS_TILE_ELEMENTS == TILE_ELEMENTS  # the planner's copy (it imports no torch)


@pytest.mark.parametrize("arch", ["tiny_llama_dir", "tiny_qwen2_dir"])
def test_decoder_route_equals_the_models_own_loss_and_gradients(arch, request):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lora_adapt.training.lm_loss import decoder_output, unsupported_reason

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(request.getfixturevalue(arch), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    assert unsupported_reason(model) is None
    ids = torch.randint(0, base.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :6] = -100
    mask = torch.ones_like(ids)
    mask[1, -4:] = 0
    labels[1, -4:] = -100
    own = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    own.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    hidden, head = decoder_output(model, model, {"input_ids": ids, "attention_mask": mask, "labels": labels})
    stats = chunked_lm_loss(hidden, head.weight, head.bias, labels, chunk=5)
    stats.loss.backward()
    torch.testing.assert_close(stats.loss, own, rtol=1e-5, atol=1e-6)
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_auto_picks_chunked_off_cuda_and_trl_on_cuda():
    assert resolve_loss_path("auto", "cpu") == "chunked"
    assert resolve_loss_path("auto", "mps") == "chunked"
    assert resolve_loss_path("auto", "cuda") == "trl"
    assert resolve_loss_path("liger", "cuda") == "liger"
    assert resolve_loss_path("chunked", "cpu", "sequence_classification") == "head"


def test_loss_path_is_refused_for_a_classifier_head(tmp_path, tiny_llama_dir):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "a b", "label": "x"}] * 4)
    path = sft_recipe(
        tmp_path, tiny_llama_dir, data, task={"type": "classification"}, training={"loss_path": "chunked"}
    )
    with pytest.raises(RecipeError, match="loss_path"):
        load_recipe(path)


def test_liger_off_cuda_is_a_usage_error(tmp_path, tiny_llama_dir):
    from lora_adapt.training import check_loss_path

    with pytest.raises(UsageError, match="CUDA"):
        check_loss_path("liger", None, device="cpu", explicit=True)


def test_cpu_training_runs_the_chunked_path_and_logs_its_metrics(tmp_path, tiny_llama_dir):
    from lora_adapt.modeling import attach_adapter
    from lora_adapt.runtime import load_model_and_data, make_trainer, resolve_runtime
    from lora_adapt.training.lm_loss import LossPathSFTTrainer

    data = write_jsonl(tmp_path / "d.jsonl", instruction_rows(24))
    recipe = load_recipe(sft_recipe(tmp_path, tiny_llama_dir, data, training={"max_steps": 2}))
    runtime = resolve_runtime(recipe)
    assert runtime.loss_path == "chunked" and runtime.to_json()["loss_path"] == "chunked"
    loaded, prepared = load_model_and_data(recipe, runtime, echo=lambda _: None)
    model = attach_adapter(loaded, recipe.adapter)
    trainer = make_trainer(
        recipe, runtime, model, loaded.tokenizer, prepared, tmp_path / "ck", [], echo=lambda _: None
    )
    assert isinstance(trainer, LossPathSFTTrainer)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert logged and all(0 <= h["mean_token_accuracy"] <= 1 and h["entropy"] > 0 for h in logged)
    metrics = trainer.evaluate(eval_dataset=prepared.validation)
    assert metrics["eval_loss"] > 0 and "eval_entropy" in metrics
