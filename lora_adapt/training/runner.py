"""Running a configured trainer (either kind): resume from the last checkpoint, early stopping and
TensorBoard callbacks, held-out loss, and the JSON-able result of a run."""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import EarlyStoppingCallback, TrainerCallback


@dataclass
class TrainResult:
    global_step: int
    history: list[dict[str, Any]]
    final_train_loss: float | None  # the last logged training loss
    mean_train_loss: float | None  # averaged over the whole run (Trainer's train_loss)
    best_metric: float | None
    best_checkpoint: str | None
    best_step: int | None  # the step whose checkpoint became the saved adapter (early stopping), else None
    stopped_early: bool
    runtime_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "global_step": self.global_step,
            "final_loss": self.final_train_loss,
            "mean_loss": self.mean_train_loss,
            "best_metric": self.best_metric,
            "best_step": self.best_step,
            "stopped_early": self.stopped_early,
            "runtime_s": round(self.runtime_s, 2),
            "history": self.history,
        }


def early_stopping_callbacks(spec) -> list[TrainerCallback]:
    if spec.early_stopping is None:
        return []
    return [
        EarlyStoppingCallback(
            early_stopping_patience=spec.early_stopping.patience,
            early_stopping_threshold=spec.early_stopping.threshold,
        )
    ]


def logging_callbacks(spec, logs_dir: Path) -> list[TrainerCallback]:
    """TensorBoard events go to ``<run>/logs`` (kept), not under the checkpoints (discarded)."""
    if spec.report_to != "tensorboard":
        return []
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return [TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(logs_dir)))]


def run_trainer(
    trainer,
    *,
    resume_from: Path | None,
    max_steps_hint: int | None,
    resume_steps: Sequence[int] = (),
) -> TrainResult:
    """Train (from ``resume_from``, a complete checkpoint, when given), then collect a JSON-able result.

    ``resume_steps``: the steps every resume of this run started from (this one included), so that the
    mean training loss covers the whole run, not only the part trained since the last resume."""
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    state = trainer.state
    history = clean_history(state.log_history)
    losses = [h["loss"] for h in history if "loss" in h]
    planned = state.max_steps
    mean = whole_run_mean(history, resume_steps, output.training_loss, state.global_step)
    return TrainResult(
        global_step=state.global_step,
        history=history,
        final_train_loss=losses[-1] if losses else output.training_loss,
        mean_train_loss=round(mean, 6) if mean is not None else None,
        best_metric=state.best_metric,
        best_checkpoint=state.best_model_checkpoint,
        best_step=state.best_global_step if trainer.args.load_best_model_at_end else None,
        stopped_early=state.global_step < planned
        and max_steps_hint is None
        and bool(trainer.args.load_best_model_at_end),
        runtime_s=output.metrics.get("train_runtime", 0.0),
        extra={"resumed_from": resume_from.name if resume_from else None, "planned_steps": planned},
    )


def whole_run_mean(
    history: list[dict[str, Any]], resume_steps: Sequence[int], session_mean: float | None, global_step: int
) -> float | None:
    """Mean training loss per step over the whole run.

    transformers averages only the steps trained since the last resume (``session_mean``). The steps
    before it are recovered from the logged losses (each the mean over its logging window; a window
    ends at a resume point, where the running sum restarts). Steps trained after the last log before a
    crash were never logged and cannot be counted."""
    if not resume_steps or session_mean is None:
        return session_mean
    last = max(resume_steps)
    covered, total, previous = 0, 0.0, 0
    for entry in history:
        step = entry.get("step")
        if "loss" not in entry or not isinstance(step, int) or step > last:
            continue
        start = max([previous, *[r for r in resume_steps if r < step]])
        covered += step - start
        total += entry["loss"] * (step - start)
        previous = step
    session_steps = global_step - last
    if covered + session_steps <= 0:
        return session_mean
    return (total + session_mean * session_steps) / (covered + session_steps)


def evaluate_loss(trainer, dataset, prefix: str) -> dict[str, float]:
    """Mean token loss and perplexity of ``dataset`` (labels from the completion mask)."""
    metrics = trainer.evaluate(eval_dataset=dataset, metric_key_prefix=prefix)
    loss = metrics.get(f"{prefix}_loss")
    if loss is None:
        return {}
    return {"loss": round(loss, 6), "perplexity": round(math.exp(min(loss, 50.0)), 4)}


def discard_checkpoints(checkpoints: Path) -> None:
    shutil.rmtree(checkpoints, ignore_errors=True)


def clean_history(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trainer's log entries, floats rounded (non-finite ones kept as they are: they are the story)."""
    return [_clean_log(entry) for entry in log_history]


def _clean_log(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in entry.items()}
