"""What one training run measures about itself, through the Trainer's callback API and module hooks
(no library code is patched): step times, tokens with and without padding, the bytes autograd saves
during one forward, FLOPs of one whole step, peak memory, the loss."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainerCallback


@dataclass
class StepRecord:
    step: int
    seconds: float
    tokens: int  # real tokens (attention mask ones), padding excluded
    processed: int  # positions computed, padding included


@dataclass
class ProbeResult:
    steps: list[StepRecord] = field(default_factory=list)
    saved_bytes: int = 0  # unique storage bytes saved for backward in one forward (parameters excluded)
    saved_batch: tuple[int, int] = (0, 0)  # (rows, padded length) of that forward
    flops: int = 0  # FlopCounterMode total for one optimizer step (forward + backward)
    flop_tokens: int = 0  # positions computed in that step
    longest_batch: tuple[int, int] = (0, 0)  # (rows, padded length) of the largest micro-batch seen
    losses: list[float] = field(default_factory=list)


class StepProbe(TrainerCallback):
    """Times steps `warmup+1 .. warmup+timed`, counts FLOPs on the step after them, and records the
    saved-for-backward bytes on the first timed step. Checkpoint saving and evaluation are switched
    off through `control`, so only training is measured."""

    def __init__(self, warmup: int, timed: int, count_flops: bool = True):
        self.warmup, self.timed, self.count_flops = warmup, timed, count_flops
        self.result = ProbeResult()
        self._t0 = 0.0
        self._step = 0
        self._tokens = self._processed = 0
        self._flop_mode: Any = None
        self._saving: Any = None
        self._seen: dict[int, int] = {}
        self._params: set[int] = set()
        self._handles: list[Any] = []
        self.trainer: Any = None
        """The trainer measured (set by the caller): where packed rows are kept apart, its `batch_tokens`
        counts a batch's real tokens (the batch has no attention mask to count them by)."""

    # -- trainer events --------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self._handles = [
            model.register_forward_pre_hook(self._before_forward, with_kwargs=True),
            model.register_forward_hook(self._after_forward),
        ]

    def on_step_begin(self, args, state, control, **kwargs):
        self._tokens = self._processed = 0
        self._step = state.global_step + 1
        if self._is_flop_step(self._step):
            from torch.utils.flop_counter import FlopCounterMode

            self._flop_mode = FlopCounterMode(display=False)
            self._flop_mode.__enter__()
        _synchronize()
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        _synchronize()
        seconds = time.perf_counter() - self._t0
        step = state.global_step
        if self._flop_mode is not None:
            self._flop_mode.__exit__(None, None, None)
            self.result.flops, self.result.flop_tokens = self._flop_mode.get_total_flops(), self._processed
            self._flop_mode = None
        elif self.warmup < step <= self.warmup + self.timed:
            self.result.steps.append(StepRecord(step, seconds, self._tokens, self._processed))
        control.should_save = control.should_evaluate = False

    def on_epoch_end(self, args, state, control, **kwargs):
        control.should_save = control.should_evaluate = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.result.losses.append(float(logs["loss"]))

    def on_train_end(self, args, state, control, **kwargs):
        for handle in self._handles:
            handle.remove()

    # -- forward hooks ---------------------------------------------------------------------------
    def _before_forward(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and module.training:
            mask = kwargs.get("attention_mask")
            self._processed += ids.numel()
            if ids.numel() > self.result.longest_batch[0] * self.result.longest_batch[1]:
                self.result.longest_batch = (int(ids.shape[0]), int(ids.shape[-1]))
            self._tokens += self._real_tokens(ids, mask)
            if self._step == self.warmup + 1 and self._saving is None and not self.result.saved_bytes:
                self.result.saved_batch = (int(ids.shape[0]), int(ids.shape[-1]))
                self._start_saving()

    def _real_tokens(self, ids, mask) -> int:
        """The batch's real tokens: its attention mask's ones; without a mask (packed rows), the count the
        trainer took before the forward, else every position."""
        if mask is not None:
            return int(mask.sum())
        known = getattr(self.trainer, "batch_tokens", None)
        return int(known) if known is not None else ids.numel()

    def _after_forward(self, module, args, output):
        if self._saving is not None:
            self._saving.__exit__(None, None, None)
            self._saving = None
            self.result.saved_bytes = sum(self._seen.values())

    def _start_saving(self) -> None:
        import torch

        self._seen = {}
        self._saving = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._saving.__enter__()

    def _pack(self, t):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self._params and t.device.type != "meta":
            self._seen[ptr] = max(self._seen.get(ptr, 0), storage.nbytes())
        return t

    def _is_flop_step(self, step: int) -> bool:
        return self.count_flops and step == self.warmup + self.timed + 1


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
