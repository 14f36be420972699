"""TRL's SFTTrainer with the loss path chosen per device (`training.loss_path`), through its `compute_loss`
extension point: nothing in TRL or transformers is patched.

The model is called as usual (through the accelerator's wrapper, so distributed gradient hooks run)
with `logits_to_keep` selecting no position, so its LM head projects nothing; a forward hook on the
decoder captures the hidden states the head would have read. The loss is then computed over the
scored positions only (labels != -100): by `chunked_loss` (one chunk of logits at a time) or by
Liger-Kernel's fused linear cross-entropy (CUDA). Entropy and token accuracy, which TRL logs every
step, come out of the same pass.

With packing on attention without variable-length kernels (SDPA, eager), each packed row stays its own
batch row (training/packing.py).

Anything this path does not cover (label smoothing, a custom `compute_loss_func`, DFT loss, MoE auxiliary
losses, context or sequence parallelism, `return_outputs`) goes to TRL's own `compute_loss`."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from trl import SFTTrainer

from .chunked_loss import LossStats, chunked_lm_loss, scored_positions

OWN_PATHS = ("chunked", "liger")
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier")
LOGIT_TRANSFORMS_SCALING = "logits_scaling"


def unsupported_reason(model) -> str | None:
    """Why the decoder-output route cannot score `model` exactly (None when it can): the head must read
    the decoder's output unchanged, and the forward must accept `logits_to_keep`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not hasattr(base, "get_decoder") or base.get_output_embeddings() is None:
        return f"{type(base).__name__} has no separate decoder and LM head"
    if "logits_to_keep" not in inspect.signature(type(base).forward).parameters:
        return f"{type(base).__name__}.forward takes no logits_to_keep"
    config = base.config.get_text_config()
    transforms = [k for k in LOGIT_TRANSFORMS if getattr(config, k, None) not in (None, 1, 1.0)]
    if getattr(config, LOGIT_TRANSFORMS_SCALING, None) not in (None, 1, 1.0):
        transforms.append(LOGIT_TRANSFORMS_SCALING)
    if transforms:
        return f"{type(base).__name__} transforms its logits ({', '.join(transforms)})"
    return None


class PackedRowsSFTTrainer(SFTTrainer):
    """`SFTTrainer` that, with packing on attention without variable-length kernels, collates each packed
    row as its own batch row (training/packing.py) instead of TRL's one concatenated row: the same loss, a
    `micro_batch` times smaller attention. The logged token count leaves the padding out."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batch_tokens: int | None = None
        """Real tokens in the batch being computed, when packed rows are kept apart (None otherwise)."""
        self.packed_rows = self._keep_packed_rows_apart()

    def _keep_packed_rows_apart(self) -> bool:
        from ..recipe.derived import keeps_packed_rows_apart
        from .packing import PackedRowsCollator

        model = self.accelerator.unwrap_model(self.model)
        attention = getattr(getattr(model, "config", None), "_attn_implementation", None)
        parallel = self.accelerator.parallelism_config
        if not (self.padding_free and self.args.packing and keeps_packed_rows_apart(attention)):
            return False
        if parallel is not None and (parallel.cp_enabled or parallel.sp_enabled):
            return False  # context / sequence parallelism split TRL's single row across ranks
        self.data_collator = PackedRowsCollator(
            pad_token_id=self.data_collator.pad_token_id, pad_to_multiple_of=self.args.pad_to_multiple_of
        )
        return True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        from .packing import PACKED_TOKENS

        tokens = inputs.pop(PACKED_TOKENS, None)
        self.batch_tokens = int(tokens) if tokens is not None else None
        counted = self._total_train_tokens
        result = self._packed_loss(model, inputs, return_outputs, num_items_in_batch)
        if tokens is not None and self._total_train_tokens != counted:
            # TRL counted `position_ids.size(1)` (its single row's length): count the real tokens instead
            gathered = self.accelerator.gather_for_metrics(tokens.to(inputs["input_ids"].device)).sum().item()
            self._total_train_tokens = counted + gathered // self._tp_size
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        return result

    def _packed_loss(self, model, inputs, return_outputs, num_items_in_batch):
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


class LossPathSFTTrainer(PackedRowsSFTTrainer):
    """`SFTTrainer` whose loss takes `loss_path` ("chunked" or "liger")."""

    def __init__(self, *args, loss_path: str, **kwargs):
        if loss_path not in OWN_PATHS:
            raise ValueError(f"loss_path {loss_path!r}: this trainer computes {OWN_PATHS}")
        self.loss_path = loss_path
        self._liger: Any = None
        super().__init__(*args, **kwargs)

    def _packed_loss(self, model, inputs, return_outputs, num_items_in_batch):
        if return_outputs or not self._own_loss_applies(inputs):
            return super()._packed_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        labels = inputs["labels"]
        hidden, head = decoder_output(model, self.accelerator.unwrap_model(model), inputs)
        if self.loss_path == "liger":
            stats = self._liger_loss(hidden, head, labels, num_items_in_batch)
        else:
            stats = chunked_lm_loss(hidden, head.weight, head.bias, labels, num_items=num_items_in_batch)
        loss = stats.loss
        # as TRL: `num_items_in_batch` counts every rank's tokens and DDP averages the gradients
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        self._record_metrics(mode, stats, inputs)
        return loss

    def _own_loss_applies(self, inputs) -> bool:
        return "labels" in inputs and "shift_labels" not in inputs and self._own_loss_configured()

    def _own_loss_configured(self) -> bool:
        parallel = self.accelerator.parallelism_config
        return (
            self.compute_loss_func is None
            and self.label_smoother is None
            and getattr(self.args, "loss_type", "nll") == "nll"
            and not self.aux_loss_enabled
            and not (parallel is not None and (parallel.cp_enabled or parallel.sp_enabled))
        )

    def _liger_loss(self, hidden, head, labels, num_items) -> LossStats:
        if self._liger is None:
            from liger_kernel.transformers.fused_linear_cross_entropy import (
                LigerFusedLinearCrossEntropyLoss,
            )

            self._liger = LigerFusedLinearCrossEntropyLoss(reduction="sum", return_token_accuracy=True)
        states, targets, count = scored_positions(hidden, labels)
        out = self._liger(head.weight, states, targets, head.bias)
        denominator = count.clamp(min=1) if num_items is None else num_items
        correct = (out.token_accuracy.detach() * count).round().long()
        return LossStats(out.loss / denominator, count, None, correct)

    def _record_metrics(self, mode: str, stats: LossStats, inputs) -> None:
        """TRL's per-step metrics (entropy, mean_token_accuracy, num_tokens), from the loss's own pass."""
        gather = self.accelerator.gather_for_metrics
        valid = gather(stats.tokens.detach()).sum()
        n = valid.item()
        metrics = self._metrics[mode]
        if stats.entropy_sum is not None:
            metrics["entropy"].append((gather(stats.entropy_sum).sum() / valid).item() if n else 0.0)
        metrics["mean_token_accuracy"].append((gather(stats.correct).sum() / valid).item() if n else 0.0)
        if mode == "train":
            if "attention_mask" in inputs:
                tokens = gather(inputs["attention_mask"].sum()).sum().item()
            else:  # padding-free packing: one row (rows kept apart: corrected by PackedRowsSFTTrainer)
                ids = inputs["position_ids"]
                tokens = gather(torch.tensor(ids.size(1), device=ids.device)).sum().item()
            self._total_train_tokens += tokens // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]


def decoder_output(call, model, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.nn.Module]:
    """Run `call` (the model, possibly wrapped) on `inputs` without labels and with no logits kept; return
    the decoder's last hidden states, captured by a forward hook, and the LM head of `model`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder()
    captured: dict[str, torch.Tensor] = {}

    def keep(_module, _args, output):
        captured["hidden"] = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    ids = inputs["input_ids"]
    handle = decoder.register_forward_hook(keep)
    try:
        call(
            **{k: v for k, v in inputs.items() if k != "labels"},
            use_cache=False,
            logits_to_keep=torch.zeros(0, dtype=torch.long, device=ids.device),
        )
    finally:
        handle.remove()
    return captured["hidden"], base.get_output_embeddings()
