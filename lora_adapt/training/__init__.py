"""Training orchestration: SFTTrainer for generative tasks (and Trainer for classifier heads)."""

from .config import Precision, common_args, resolve_precision, sft_config
from .sft import (
    TrainResult,
    discard_checkpoints,
    early_stopping_callbacks,
    evaluate_loss,
    logging_callbacks,
    make_sft_trainer,
    run_trainer,
)

__all__ = [
    "Precision",
    "TrainResult",
    "common_args",
    "discard_checkpoints",
    "early_stopping_callbacks",
    "evaluate_loss",
    "logging_callbacks",
    "make_sft_trainer",
    "resolve_precision",
    "run_trainer",
    "sft_config",
]
