"""The ``full_finetune`` baseline: the same job with the adapter switched off - the same base model,
data, trainer and budget, every parameter trained.

It is built from what the pipeline builds from (``runtime.load_base`` and
``runtime.make_trainer``) on the recipe in its `full` benchmark mode (``recipe.derived.mode_recipe``):
unquantized, at ``evaluation.full_finetune_learning_rate`` (default 0.1 x the adapter's rate, because
full fine-tuning diverges at LoRA rates). Evaluation receives the trained model to score; it never
trains anything itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .artifacts import scratch_dir
from .recipe import Recipe
from .recipe.derived import mode_recipe
from .runtime import Echo, Runtime, load_base, make_trainer


def train_full_model(
    recipe: Recipe, runtime: Runtime, tokenizer, prepared, echo: Echo = print
) -> tuple[Any, dict[str, Any]]:
    """Load a fresh copy of the base model, train all its parameters on ``prepared``, return (model, info)."""
    from .modeling import parameter_counts
    from .training import early_stopping_callbacks, run_trainer

    full = mode_recipe(recipe, "full")
    loaded = load_base(full, runtime, tokenizer, prepared.labels)
    with scratch_dir("full-ft") as tmp:
        callbacks = early_stopping_callbacks(full.training)
        trainer = make_trainer(
            full,
            runtime,
            loaded.model,
            tokenizer,
            prepared,
            Path(tmp),
            callbacks,
            echo=echo,
            label="full fine-tuning",
        )
        result = run_trainer(trainer, resume_from=None, max_steps_hint=full.training.max_steps)
    counts = parameter_counts(trainer.model)
    info = {
        "learning_rate": full.training.learning_rate,
        "steps": result.global_step,
        "final_train_loss": result.final_train_loss,
        "train_s": round(result.runtime_s, 2),
        "trainable_params": counts["trainable"],
        "trainable_share": round(counts["share"], 6),
    }
    return trainer.model, info


def trained_baselines(
    recipe: Recipe, runtime: Runtime, tokenizer, prepared, echo: Echo = print
) -> dict[str, Any]:
    """The baselines that are trained models, as callables evaluation calls when it scores them."""
    return {"full_finetune": lambda: train_full_model(recipe, runtime, tokenizer, prepared, echo)}
