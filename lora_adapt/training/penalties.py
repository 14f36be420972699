"""Penalties added to the training loss by our own trainer subclasses (no patching of the libraries).

``training.l1_penalty`` adds ``l1 x sum |w|`` over the adapter's weights (the LoRA A/B matrices, and
DoRA's magnitude vectors) to each optimizer step's loss. The validation loss stays the plain data loss:
the penalty is added only while the model is in training mode.

Gradient accumulation: transformers' Trainer either divides each micro-batch's loss by the number of
accumulation steps, or (when the loss is already normalised over the whole accumulated batch) leaves it;
the penalty follows the same rule, so it counts once per optimizer step either way.
"""

from __future__ import annotations

import functools
from typing import Any

ADAPTER_WEIGHT_MARKERS = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector")
"""Parameter-name parts of the adapter's own weights (the new head, trained in full, is not penalised)."""


def adapter_parameters(model) -> list[Any]:
    """The trainable adapter weights of ``model``."""
    return [
        param
        for name, param in model.named_parameters()
        if param.requires_grad and any(marker in name.split(".") for marker in ADAPTER_WEIGHT_MARKERS)
    ]


def l1_norm(params: list[Any]):
    """sum |w| over ``params`` (a 0-d tensor)."""
    return sum(param.abs().sum() for param in params)


class L1PenaltyMixin:
    """Adds ``l1_penalty x sum |adapter weights|`` to the loss a Trainer computes (see module doc)."""

    def __init__(self, *args: Any, l1_penalty: float = 0.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.l1_penalty = l1_penalty
        self._penalised: list[Any] | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(  # type: ignore[misc]
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )
        if not self.l1_penalty or not model.training:
            return result
        loss, outputs = result if return_outputs else (result, None)
        loss = loss + self.l1_term(model, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def l1_term(self, model, num_items_in_batch=None):
        """The penalty added to one micro-batch's loss."""
        if self._penalised is None:
            self._penalised = adapter_parameters(model)
        term = self.l1_penalty * l1_norm(self._penalised)
        if self._loss_scaled_for_accumulation(num_items_in_batch):
            term = term / getattr(self, "current_gradient_accumulation_steps", 1)
        return term

    def _loss_scaled_for_accumulation(self, num_items_in_batch) -> bool:
        """Whether the Trainer leaves this loss undivided by the accumulation steps (the rule of
        ``Trainer.training_step``)."""
        own = getattr(self, "loss_is_scaled_for_ga", None)
        if own is not None:
            return bool(own)
        accepts = getattr(self, "model_accepts_loss_kwargs", False)
        return bool(accepts and num_items_in_batch is not None) or (
            getattr(self, "compute_loss_func", None) is not None
        )


@functools.cache
def penalized(trainer_class: type) -> type:
    """``trainer_class`` with :class:`L1PenaltyMixin` in front (one subclass per trainer class); its
    constructor takes ``l1_penalty=``."""
    return type(f"Penalized{trainer_class.__name__}", (L1PenaltyMixin, trainer_class), {})
