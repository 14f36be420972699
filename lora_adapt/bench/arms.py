"""The trainers a benchmark compares, all on the same model files, token ids, batch, steps and settings.

- `lora-adapt` arms run the pipeline's own code (`runtime.resolve_runtime`, its model/data loading
  and trainer construction, `modeling.attach_adapter`) on the recipe with only the mode changed: full
  (no adapter, every parameter trained, at the full-fine-tuning learning rate of the `full_finetune`
  baseline), lora (quantization off), qlora (NF4 unless the recipe names another method).
- `peer-trainer`: the job as people write it by hand: transformers `Trainer` + `peft.get_peft_model`,
  labels = input ids (loss on every token), `DataCollatorForLanguageModeling`, no packing.
- `peer-trl`: TRL's `SFTTrainer` with its defaults and a `peft_config`, bf16 and gradient
  checkpointing set explicitly (TRL turns both on by default).
Peers read the token ids lora-adapt's data stage produced, so only the training stack differs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..recipe.derived import mode_recipe
from ..recipe.schema import Recipe

KINDS = ("lora-adapt", "peer-trainer", "peer-trl")


def build_trainer(kind: str, recipe: Recipe, mode: str, workdir: Path, callbacks: list[Any]):
    if kind == "lora-adapt":
        return lora_adapt_trainer(mode_recipe(recipe, mode), mode, workdir, callbacks)
    if kind == "peer-trainer":
        return peer_trainer(mode_recipe(recipe, "lora"), workdir, callbacks)
    if kind == "peer-trl":
        return peer_trl(mode_recipe(recipe, "lora"), workdir, callbacks)
    raise ValueError(f"unknown arm kind {kind!r}; expected one of {KINDS}")


def lora_adapt_trainer(recipe: Recipe, mode: str, workdir: Path, callbacks: list[Any]):
    """Exactly what `pipeline.run` builds before it calls `trainer.train()`."""
    from ..modeling import attach_adapter
    from ..runtime import load_model_and_data, make_trainer, resolve_runtime

    runtime = resolve_runtime(recipe)
    loaded, prepared = load_model_and_data(recipe, runtime, echo=lambda _: None)
    model = (
        loaded.model
        if mode == "full"
        else attach_adapter(
            loaded, recipe.adapter, gradient_checkpointing=recipe.training.gradient_checkpointing
        )
    )
    return make_trainer(
        recipe,
        runtime,
        model,
        loaded.tokenizer,
        prepared,
        workdir / "checkpoints",
        callbacks,
        echo=lambda _: None,
    )


def _shared_inputs(recipe: Recipe):
    """(runtime, tokenizer, prepared data, model loaded as a user would, unquantized)."""
    from ..modeling import load_model
    from ..runtime import recipe_data, recipe_tokenizer, resolve_runtime

    runtime = resolve_runtime(recipe)
    tokenizer = recipe_tokenizer(recipe)
    prepared = recipe_data(recipe, tokenizer)
    loaded = load_model(
        recipe.model,
        recipe.quantization,
        head=runtime.head,
        labels=prepared.labels,
        multi_label=recipe.task.multi_label,
        tokenizer=tokenizer,
        pooling=recipe.task.pooling,
        task_type=recipe.task.type,
    )
    return runtime, tokenizer, prepared, loaded.model


def _peft_config(recipe: Recipe, head: str):
    from peft import LoraConfig

    a = recipe.adapter
    task = {
        "causal_lm": "CAUSAL_LM",
        "sequence_classification": "SEQ_CLS",
        "token_classification": "TOKEN_CLS",
    }[head]
    targets = a.target_modules if isinstance(a.target_modules, str) else list(a.target_modules)
    heads = (
        ["classifier", "score"] if head != "causal_lm" else None
    )  # as peft's docs show for classifier heads
    return LoraConfig(
        r=a.rank,
        lora_alpha=a.alpha,  # type: ignore[arg-type]
        lora_dropout=a.dropout,
        target_modules=targets,
        task_type=task,
        modules_to_save=heads,
    )


def _plain_args(recipe: Recipe, runtime, workdir: Path) -> dict[str, Any]:
    t = recipe.training
    return dict(
        output_dir=str(workdir / "peer"),
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        max_steps=t.max_steps or -1,
        bf16=runtime.precision.bf16,
        fp16=runtime.precision.fp16,
        gradient_checkpointing=t.gradient_checkpointing,
        optim=t.optimizer,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=runtime.device == "cpu",
        seed=t.seed,
        dataloader_num_workers=0,
    )


def peer_trainer(recipe: Recipe, workdir: Path, callbacks: list[Any]):
    from peft import get_peft_model
    from transformers import (
        DataCollatorForLanguageModeling,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    runtime, tokenizer, prepared, model = _shared_inputs(recipe)
    model = get_peft_model(model, _peft_config(recipe, runtime.head))
    collator: Any
    if runtime.head == "causal_lm":
        train = prepared.train.select_columns(["input_ids"])
        collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    else:
        train = prepared.train
        collator = DataCollatorWithPadding(tokenizer)
    args = TrainingArguments(**_plain_args(recipe, runtime, workdir), remove_unused_columns=False)
    return Trainer(model=model, args=args, train_dataset=train, data_collator=collator, callbacks=callbacks)


def peer_trl(recipe: Recipe, workdir: Path, callbacks: list[Any]):
    from trl import SFTConfig, SFTTrainer

    runtime, tokenizer, prepared, model = _shared_inputs(recipe)
    if runtime.head != "causal_lm":
        raise ValueError("the TRL peer trains generative (SFT) recipes only")
    args = SFTConfig(**_plain_args(recipe, runtime, workdir), max_length=recipe.data.max_seq_length)
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=prepared.train,
        processing_class=tokenizer,
        peft_config=_peft_config(recipe, "causal_lm"),
        callbacks=callbacks,
    )
