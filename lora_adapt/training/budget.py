"""How long a run trains: the recipe's epochs, raised to ``training.min_steps`` optimizer steps on small data.

A new classifier head and a fresh adapter need a few hundred updates whatever the data size; with the
epochs fixed, 250 rows at batch 16 give 16 steps an epoch and 48 in three epochs. ``plan_budget``
adds whole epochs until the run has ``min_steps`` steps, and spreads the validation passes so the run
evaluates as many times as the recipe's epochs asked (not once per added epoch). Pure arithmetic,
unit-tested; the Trainer is given the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..recipe.schema import TrainingSpec


@dataclass(frozen=True)
class Budget:
    epochs: float
    steps_per_epoch: int
    planned_steps: int
    raised_from: float | None = None  # the recipe's epochs when min_steps raised them
    eval_steps: int | None = None  # set when the run evaluates every N steps instead of every epoch

    def to_json(self) -> dict[str, float | int | None]:
        return {
            "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "planned_steps": self.planned_steps,
            "epochs_raised_from": self.raised_from,
        }

    def describe(self, min_steps: int) -> str | None:
        if self.raised_from is None:
            return None
        return (
            f"small data: {self.steps_per_epoch} optimizer steps per epoch, so {self.raised_from:g} epochs "
            f"would train {math.ceil(self.raised_from * self.steps_per_epoch)} steps; training "
            f"{self.epochs:g} epochs ({self.planned_steps} steps) to reach training.min_steps {min_steps}"
        )


def plan_budget(spec: TrainingSpec, *, train_rows: int, world_size: int = 1, head: bool) -> Budget:
    """Epochs and evaluation spacing for ``train_rows`` rows, as the Trainer counts steps."""
    batches = math.ceil(train_rows / (spec.batch_size * world_size))
    per_epoch = max(
        math.ceil(batches / spec.gradient_accumulation_steps), 1
    )  # a last partial group steps too
    floor = spec.resolved_min_steps(head=head)
    if spec.max_steps is not None:
        return Budget(spec.epochs, per_epoch, spec.max_steps)
    planned = math.ceil(spec.epochs * per_epoch)
    if planned >= floor:
        return Budget(spec.epochs, per_epoch, planned)
    epochs = math.ceil(floor / per_epoch)
    steps = epochs * per_epoch
    evaluations = max(round(spec.epochs), 1)
    eval_steps = spec.eval_steps or math.ceil(steps / evaluations)
    return Budget(float(epochs), per_epoch, steps, raised_from=spec.epochs, eval_steps=eval_steps)
