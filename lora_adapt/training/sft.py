"""Supervised fine-tuning with TRL's SFTTrainer: TRL owns the loop, we configure it."""

from __future__ import annotations

from pathlib import Path

from transformers import TrainerCallback

from ..recipe.schema import DataSpec, TrainingSpec
from .budget import Budget
from .config import Precision, common_args
from .penalties import penalized


def sft_config(
    spec: TrainingSpec,
    data: DataSpec,
    precision: Precision,
    output_dir: Path,
    *,
    has_validation: bool,
    device: str,
    parallel: dict | None = None,
    budget: Budget | None = None,
):
    from trl import SFTConfig

    return SFTConfig(
        **common_args(
            spec,
            precision,
            output_dir,
            has_validation=has_validation,
            device=device,
            parallel=parallel,
            budget=budget,
        ),
        max_length=data.max_seq_length,
        packing=spec.packing,
        completion_only_loss=data.loss_on == "completion",
        dataset_num_proc=None,
    )


def make_sft_trainer(
    model,
    tokenizer,
    train_ds,
    eval_ds,
    args,
    callbacks: list[TrainerCallback],
    *,
    loss_path: str = "trl",
    l1_penalty: float = 0.0,
):
    """TRL's SFTTrainer (`loss_path` "trl": its own fused LM head; packed rows kept apart where attention
    has no variable-length kernel, training/packing.py), or our subclass scoring tokens by
    `loss_path` "chunked" / "liger" (training/lm_loss.py); either with the L1 penalty of
    training/penalties.py."""
    kwargs = dict(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=callbacks,
        l1_penalty=l1_penalty,
    )
    if loss_path == "trl":
        from .lm_loss import PackedRowsSFTTrainer

        return penalized(PackedRowsSFTTrainer)(**kwargs)
    from .lm_loss import LossPathSFTTrainer

    return penalized(LossPathSFTTrainer)(**kwargs, loss_path=loss_path)


def check_loss_path(loss_path: str, model, *, device: str, explicit: bool) -> str:
    """The loss path this model takes: `loss_path`, or TRL's fused head when the model cannot take ours
    and the recipe left the choice to `auto`; an explicit choice that cannot run is an error."""
    from ..errors import UsageError

    if loss_path not in ("chunked", "liger"):
        return loss_path
    if loss_path == "liger":
        if device != "cuda":
            raise UsageError(
                f"training.loss_path 'liger' needs a CUDA device (this job runs on {device})",
                hint="use chunked (any device) or auto",
            )
        try:
            import liger_kernel  # noqa: F401
        except ImportError as e:
            raise UsageError(
                "training.loss_path 'liger' needs Liger-Kernel", hint="pip install 'lora-adapt[liger]'"
            ) from e
    from .lm_loss import unsupported_reason

    reason = unsupported_reason(model)
    if reason is None:
        return loss_path
    if explicit:
        raise UsageError(
            f"training.loss_path '{loss_path}' cannot score this model: {reason}", hint="use trl"
        )
    return "trl"
