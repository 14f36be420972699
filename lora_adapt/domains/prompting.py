"""How an adapter reads new inputs as it was trained: its task spec, prompt settings, trained layout,
input length limit and answer budget (from its run's recipe, else its ``lora_adapt.json``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..recipe.schema import DataSpec, TaskSpec
from ..rundir import AdapterInfo


@dataclass(frozen=True)
class Prompting:
    """An adapter's task and prompt settings, as trained (from its run's recipe, else its lora_adapt.json)."""

    task: TaskSpec
    data: DataSpec  # only the prompt fields are meaningful (system_prompt, prompt_template, chat_template)
    layout: str  # the trained layout: chat | prompt_completion | completion | a task layout
    source_format: str | None  # the sft data format before templating (instruction, prompt_completion, ...)
    max_seq_length: int
    max_new_tokens: int  # generative tasks: the answer budget `eval` used
    pair: bool = False  # a sentence-pair adapter: each input has `text` and `text_b`

    @classmethod
    def of(cls, info: AdapterInfo) -> Prompting:
        rec = info.inference
        if info.run is not None and info.run.recipe is not None:
            recipe = info.run.recipe
            labels = tuple(info.labels) if info.labels else recipe.task.labels
            task = recipe.task.model_copy(update={"labels": labels})
            data = recipe.data
        else:
            task = TaskSpec(
                type=info.task_type,  # type: ignore[arg-type]
                mode="head" if info.head != "causal_lm" else "generative",
                labels=info.labels if info.task_type != "regression" else None,  # regression: target names
                multi_label=info.multi_label,
                label_separator=rec.get("label_separator") or "|",
                negative_label=rec.get("negative_label"),
                fields=tuple(rec["fields"]) if rec.get("fields") else None,
                targets=_target_names(info),
            )
            data = DataSpec.model_construct(
                system_prompt=rec.get("system_prompt"),
                prompt_template=rec.get("prompt_template"),
                max_seq_length=int(rec.get("max_seq_length") or 512),
            )
        default_layout = "chat" if info.task_type == "sft" else None  # an sft adapter trained elsewhere
        return cls(
            task=task,
            data=data,
            layout=str(rec.get("layout") or default_layout or ""),
            source_format=rec.get("format"),
            max_seq_length=int(rec.get("max_seq_length") or data.max_seq_length),
            max_new_tokens=int(rec.get("max_new_tokens") or 64),
            pair="text_b" in (info.task.get("inputs") or ()),
        )

    @classmethod
    def for_base(cls, tokenizer) -> Prompting:
        """The base model answering free text: chats through its own template, if it has one."""
        return cls(
            task=TaskSpec(),
            data=DataSpec.model_construct(),
            layout="chat" if getattr(tokenizer, "chat_template", None) else "completion",
            source_format=None,
            max_seq_length=int(getattr(tokenizer, "model_max_length", 0) or 0),
            max_new_tokens=64,
        )


def _target_names(info: AdapterInfo) -> tuple[str, ...] | None:
    """A regression adapter's targets, in output order (recorded with the adapter)."""
    if info.task_type != "regression":
        return None
    names = (info.task.get("targets") or {}).get("names") or info.labels
    return tuple(names) if names else None
