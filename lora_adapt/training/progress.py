"""One way to show training progress, replacing transformers' printed log dicts.

On a terminal (and ``training.progress_bar: true``): a progress bar with the step, loss, learning rate
and time left. Otherwise (a pipe, a log file, CI, or ``progress_bar: false``): one compact, aligned
line per logging step, numbers as numbers::

    step   20/135  epoch 0.74  loss 0.4127  lr 1.92e-04  grad 1.59  left 0:01:02
    eval   27/135  epoch 1.00  eval_loss 0.3312  eval_f1 0.8731

Every line also goes to the ``lora_adapt.training`` logger (at INFO), so a log file keeps them.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from transformers import PrinterCallback, ProgressCallback, TrainerCallback

log = logging.getLogger("lora_adapt.training")
SKIPPED = ("total_flos", "epoch", "step")
SHORT = {"learning_rate": "lr", "grad_norm": "grad"}


def format_number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    return f"{value:.2e}" if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5) else f"{value:.4f}"


def log_line(
    kind: str, step: int, max_steps: int, epoch: float | None, logs: dict[str, Any], eta: float | None
) -> str:
    """``step   20/135  epoch 0.74  loss 0.4127  lr 1.92e-04 ...`` (columns aligned across lines)."""
    width = len(str(max_steps))
    parts = [f"{kind:<5} {step:>{width}}/{max_steps}"]
    if epoch is not None:
        parts.append(f"epoch {epoch:.2f}")
    for key, value in logs.items():
        if key not in SKIPPED and not key.endswith(("_runtime", "_per_second")):
            parts.append(f"{SHORT.get(key, key)} {format_number(value)}")
    if eta is not None:
        parts.append(f"left {timedelta(seconds=round(eta))}")
    return "  ".join(parts)


class TrainingProgress(TrainerCallback):
    """A bar on a terminal, else a line per logging step through ``echo``."""

    def __init__(self, echo: Callable[[str], None] = print, *, bar: bool | None = None, label: str = ""):
        self.echo = echo
        self.bar_wanted = sys.stderr.isatty() if bar is None else bar
        self.label = label
        self._bar: Any = None
        self._started = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()
        if state.is_world_process_zero and self.bar_wanted:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=state.max_steps, desc=self.label or "training", dynamic_ncols=True, leave=False
            )

    def on_step_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.update(state.global_step - self._bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "train_runtime" in logs:
            return
        kind = "eval" if any(k.startswith("eval_") for k in logs) else "step"
        line = log_line(
            kind, state.global_step, state.max_steps, logs.get("epoch", state.epoch), logs, self._eta(state)
        )
        log.info(line)
        if self._bar is not None:
            self._bar.set_postfix(
                {SHORT.get(k, k): format_number(v) for k, v in logs.items() if k in ("loss", "learning_rate")}
            )
            if kind == "eval":
                self._bar.write(line)
        else:
            self.echo(f"{self.label}: {line}" if self.label else line)

    def on_train_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _eta(self, state) -> float | None:
        done = state.global_step
        if not done or done >= state.max_steps:
            return None
        return (time.perf_counter() - self._started) / done * (state.max_steps - done)


def use_progress(trainer, echo: Callable[[str], None] = print, *, bar: bool, label: str = "") -> Any:
    """Replace transformers' printers (raw log dicts) on ``trainer`` with :class:`TrainingProgress`."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(TrainingProgress(echo, bar=bar and sys.stderr.isatty(), label=label))
    return trainer
