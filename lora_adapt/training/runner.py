"""Running a configured trainer (either kind): resume from the last checkpoint, early stopping and
TensorBoard callbacks, held-out loss, and the JSON-able result of a run."""

from __future__ import annotations

import math
import shutil
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


def run_trainer(trainer, *, checkpoints: Path, resume: bool, max_steps_hint: int | None) -> TrainResult:
    """Train (resuming from the last checkpoint when asked), then collect a JSON-able result."""
    last = _last_checkpoint(checkpoints) if resume else None
    output = trainer.train(resume_from_checkpoint=str(last) if last else None)
    state = trainer.state
    history = [_clean_log(entry) for entry in state.log_history]
    losses = [h["loss"] for h in history if "loss" in h]
    planned = state.max_steps
    return TrainResult(
        global_step=state.global_step,
        history=history,
        final_train_loss=losses[-1] if losses else output.training_loss,
        mean_train_loss=round(output.training_loss, 6) if output.training_loss is not None else None,
        best_metric=state.best_metric,
        best_checkpoint=state.best_model_checkpoint,
        best_step=state.best_global_step if trainer.args.load_best_model_at_end else None,
        stopped_early=state.global_step < planned
        and max_steps_hint is None
        and bool(trainer.args.load_best_model_at_end),
        runtime_s=output.metrics.get("train_runtime", 0.0),
        extra={"resumed_from": str(last.name) if last else None, "planned_steps": planned},
    )


def evaluate_loss(trainer, dataset, prefix: str) -> dict[str, float]:
    """Mean token loss and perplexity of ``dataset`` (labels from the completion mask)."""
    metrics = trainer.evaluate(eval_dataset=dataset, metric_key_prefix=prefix)
    loss = metrics.get(f"{prefix}_loss")
    if loss is None:
        return {}
    return {"loss": round(loss, 6), "perplexity": round(math.exp(min(loss, 50.0)), 4)}


def discard_checkpoints(checkpoints: Path) -> None:
    shutil.rmtree(checkpoints, ignore_errors=True)


def _last_checkpoint(folder: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    if not folder.is_dir():
        return None
    last = get_last_checkpoint(str(folder))
    return Path(last) if last else None


def _clean_log(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in entry.items()}
