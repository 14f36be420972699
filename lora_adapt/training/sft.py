"""Supervised fine-tuning with TRL's SFTTrainer: TRL owns the loop, we configure it."""

from __future__ import annotations

from pathlib import Path

from transformers import TrainerCallback

from ..recipe.schema import DataSpec, TrainingSpec
from .config import Precision, common_args


def sft_config(
    spec: TrainingSpec,
    data: DataSpec,
    precision: Precision,
    output_dir: Path,
    *,
    has_validation: bool,
    device: str,
):
    from trl import SFTConfig

    return SFTConfig(
        **common_args(spec, precision, output_dir, has_validation=has_validation, device=device),
        max_length=data.max_seq_length,
        packing=spec.packing,
        completion_only_loss=data.loss_on == "completion",
        dataset_num_proc=None,
    )


def make_sft_trainer(model, tokenizer, train_ds, eval_ds, args, callbacks: list[TrainerCallback]):
    from trl import SFTTrainer

    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
