"""Divergence: a non-finite loss or gradient stops training at once; a final loss above where it started
(or above chance for a classifier head) is flagged with the step and the likely causes.

- :class:`DivergenceGuard` checks the gradients at every optimizer step (a NaN/inf loss makes NaN
  gradients; transformers hides a NaN loss from its logs by default) and the logged loss and gradient
  norm, and stops training at the first non-finite one; no checkpoint is saved after it.
- :func:`loss_rise` compares the last logged training loss with the first one and with the chance loss
  ``ln K`` of a K-class head; :func:`likely_causes` reads the recipe for the usual culprits.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..errors import TrainingDivergedError
from ..recipe.derived import Head
from ..recipe.schema import TrainingSpec
from ..rundir import judged_loss

# fp16 training with a gradient scaler overflows now and then by design (the step is skipped and the
# scale halved); only a streak this long is divergence.
FP16_OVERFLOW_STREAK = 10


class DivergenceGuard(TrainerCallback):
    """Stop at the first optimizer step with non-finite gradients (or a logged non-finite loss / norm)."""

    def __init__(self) -> None:
        self.tripped: dict[str, Any] | None = None
        self._streak = 0

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [p.grad for p in model.parameters() if p.grad is not None] if model is not None else []
        if not grads or _all_finite(grads):
            self._streak = 0
            return control
        self._streak += 1
        if self._streak >= (FP16_OVERFLOW_STREAK if args.fp16 else 1):
            self._trip(control, state.global_step + 1, "gradient norm", _norm(grads))
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key, what in (("loss", "training loss"), ("grad_norm", "gradient norm")):
            value = (logs or {}).get(key)
            if isinstance(value, float) and not math.isfinite(value) and self.tripped is None:
                self._trip(control, state.global_step, what, value)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        return self._no_more_saves(control)

    def on_epoch_end(self, args, state, control, **kwargs):
        return self._no_more_saves(control)

    def _trip(self, control, step: int, what: str, value: float) -> None:
        if self.tripped is None:
            self.tripped = {"step": step, "what": what, "value": str(value)}
        control.should_training_stop = True
        # on_log runs after on_step_end and before the Trainer saves this step's checkpoint: cancel it here
        self._no_more_saves(control)

    def _no_more_saves(self, control):
        if self.tripped is not None:  # weights after a non-finite step are garbage: never checkpoint them
            control.should_save = False
            control.should_evaluate = False
        return control


def _all_finite(grads: list) -> bool:
    """One device sync per step (the flags are stacked on one device before being read)."""
    import torch

    flags = [torch.isfinite(g).all() for g in grads]
    try:
        return bool(torch.stack([f.to(flags[0].device) for f in flags]).all().item())
    except (RuntimeError, TypeError):  # flags that cannot be stacked (sharded tensors): read one by one
        return all(bool(f) for f in flags)


def _norm(grads: list) -> float:
    import torch

    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])))


def chance_loss(head: Head, labels: tuple[str, ...] | None, multi_label: bool) -> float | None:
    """Cross-entropy of a uniform guess, ln K, for a K-class head (None where it does not apply)."""
    if head == "causal_lm" or multi_label or not labels or len(labels) < 2:
        return None
    return math.log(len(labels))


def check_final_loss(
    history: list[dict[str, Any]],
    *,
    head: Head,
    labels: tuple[str, ...] | None,
    multi_label: bool,
    spec: TrainingSpec,
    precision: str,
    kept_step: int | None = None,
) -> dict[str, Any] | None:
    """The end-of-training loss check for ``metrics.json`` (``train.divergence``): None when the loss
    ended where it should, else the rise with the likely causes. ``kept_step``: the step whose checkpoint
    early stopping loaded at the end (the model the run keeps), judged instead of the last step."""
    rise = loss_rise(
        history,
        chance=chance_loss(head, labels, multi_label),
        margin=spec.divergence.margin,
        kept_step=kept_step,
    )
    if rise is None:
        return None
    return {**rise, "allowed": spec.divergence.allow, "likely_causes": likely_causes(spec, precision)}


def loss_rise(
    history: list[dict[str, Any]], *, chance: float | None, margin: float, kept_step: int | None = None
) -> dict[str, Any] | None:
    """The final logged loss against the first (and against chance): a record when it ends above either
    by more than ``margin`` (relative), else None. With ``kept_step`` (early stopping loaded that step's
    checkpoint) the loss logged at or last before it is judged: what came after was trained and thrown
    away, and is not the model the run keeps."""
    losses = [(int(h["step"]), float(h["loss"])) for h in history if "loss" in h and "step" in h]
    if kept_step is not None:
        losses = [(step, loss) for step, loss in losses if step <= kept_step]
    if len(losses) < 2:
        return None
    (start_step, start), (final_step, final) = losses[0], losses[-1]
    limits = {"starting loss": start, **({"chance loss": chance} if chance is not None else {})}
    above = {name: value for name, value in limits.items() if final > value * (1 + margin)}
    if not above:
        return None
    peak_step, peak = max(losses, key=lambda pair: pair[1])
    bound = min(above.values()) * (1 + margin)
    rose_at = next(step for step, loss in losses if loss > bound)
    return {
        "start": {"step": start_step, "loss": start},
        "final": {"step": final_step, "loss": final},
        "peak": {"step": peak_step, "loss": peak},
        "chance_loss": round(chance, 6) if chance is not None else None,
        "above": sorted(above),
        "rose_at_step": rose_at,
        "margin": margin,
        "kept_step": kept_step,
    }


def describe_rise(rise: dict[str, Any]) -> str:
    final, start, peak = rise["final"], rise["start"], rise["peak"]
    chance = f", chance loss {rise['chance_loss']:.4f}" if rise.get("chance_loss") is not None else ""
    return (
        f"training diverged: {judged_loss(rise)} {final['loss']:.4f} (logged at step {final['step']}) is above the "
        f"{' and the '.join(rise['above'])} (starting loss {start['loss']:.4f} at step {start['step']}{chance}); "
        f"it first rose above at step {rise['rose_at_step']} and peaked at {peak['loss']:.4f} (step {peak['step']})"
    )


def describe_trip(tripped: dict[str, Any]) -> str:
    return f"training diverged at step {tripped['step']}: the {tripped['what']} is {tripped['value']} (not finite)"


def likely_causes(spec: TrainingSpec, precision: str) -> list[str]:
    """The usual culprits this recipe shows, most likely first."""
    causes = []
    if spec.learning_rate > 1e-3:
        causes.append(
            f"the learning rate is high (training.learning_rate = {spec.learning_rate:g}; LoRA usually trains "
            "at 1e-4 to 5e-4): lower it"
        )
    else:
        causes.append(
            f"the learning rate (training.learning_rate = {spec.learning_rate:g}) is too high for this model and data: lower it"
        )
    if spec.max_grad_norm == 0:
        causes.append("gradients are not clipped (training.max_grad_norm = 0): set it to 1.0")
    if spec.warmup_ratio == 0:
        causes.append("no warm-up (training.warmup_ratio = 0): try 0.03-0.1")
    if precision == "fp16":
        causes.append("fp16 overflows easily: use training.precision bf16 (or fp32)")
    return causes


def trip_record(
    tripped: dict[str, Any],
    history: list[dict[str, Any]],
    spec: TrainingSpec,
    precision: str,
    checkpoints: Any,
) -> dict[str, Any]:
    """What a run stopped for a non-finite step keeps for diagnosis (``divergence.json`` in its staging
    folder): where it tripped, every logged loss and gradient norm up to there, the likely causes and
    the checkpoints from before the divergence."""
    from .checkpoints import checkpoints_by_step

    folder = Path(checkpoints)
    kept = [p.name for p in reversed(checkpoints_by_step(folder))] if folder.is_dir() else []
    return {
        **tripped,
        "message": describe_trip(tripped),
        "likely_causes": likely_causes(spec, precision),
        "checkpoints_kept": kept,
        "history": [{k: _strict(v) for k, v in entry.items()} for entry in history],
    }


def _strict(value: Any) -> Any:
    """Non-finite floats as the strings "nan" / "inf" / "-inf" (strict JSON has no literal for them)."""
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def trip_error(record: dict[str, Any], record_path: Any) -> TrainingDivergedError:
    kept = record["checkpoints_kept"]
    before = (
        f"the checkpoints from before it ({', '.join(kept)}) are kept beside it"
        if kept
        else "no checkpoint was saved before it"
    )
    return TrainingDivergedError(
        f"{record['message']}; training was stopped and the run was not finished. Likely causes: "
        f"{'; '.join(record['likely_causes'])}. The losses and gradient norms up to that step are in "
        f"{record_path}; {before}",
        hint="fix the recipe and start over with --overwrite (a --resume would continue with the same "
        "settings from before the divergence)",
    )


def rise_error(rise: dict[str, Any], final: Any) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"{describe_rise(rise)}. The run was written to {final} with this warning, for diagnosis (eval, "
        "merge, export, serve and push refuse it); likely causes: "
        f"{'; '.join(rise['likely_causes'])}",
        hint="fix the recipe and rerun with --overwrite, or set training.divergence.allow: true to accept "
        "such a run",
    )
