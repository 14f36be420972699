"""Training: SFTTrainer for generative tasks (sft.py), Trainer for classifier heads (heads.py), and what
both share (config.py translators, runner.py runs and results, progress.py display)."""

from .budget import Budget, plan_budget
from .config import Precision, common_args, resolve_precision
from .progress import TrainingProgress, use_progress
from .runner import (
    TrainResult,
    discard_checkpoints,
    early_stopping_callbacks,
    evaluate_loss,
    logging_callbacks,
    run_trainer,
)
from .sft import check_loss_path, make_sft_trainer, sft_config
from .strategy import deepspeed_config, fsdp_config, strategy_args

__all__ = [
    "Budget",
    "Precision",
    "TrainResult",
    "TrainingProgress",
    "check_loss_path",
    "common_args",
    "deepspeed_config",
    "discard_checkpoints",
    "early_stopping_callbacks",
    "evaluate_loss",
    "fsdp_config",
    "logging_callbacks",
    "make_sft_trainer",
    "plan_budget",
    "resolve_precision",
    "run_trainer",
    "sft_config",
    "strategy_args",
    "use_progress",
]
