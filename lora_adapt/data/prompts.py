"""Prompts: how an instruction row or a task example is put to a generative model.

``generative_prompt`` is shared by training and evaluation. The prompt ends with ``Answer:`` and
the gold completion starts with a space (``" spam"``), so the boundary tokenizes as it would in
running text; compare answers after ``strip()``. A sentence pair is put as two labelled parts
(``Text A: ...`` / ``Text B: ...``); a regression answer is the number with two decimals (``" 3.80"``), or
``"V: 3.20; A: 2.80; D: 3.10"`` for several targets (data/targets.py writes it, evaluation parses it).
"""

from __future__ import annotations

import json
from typing import Any

from ..recipe.derived import DEFAULT_TARGET, target_names
from ..recipe.schema import DataSpec, TaskSpec
from .targets import format_targets

ALPACA_INPUT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
ALPACA = "### Instruction:\n{instruction}\n\n### Response:\n"
NO_ENTITIES = "none"

INSTRUCTIONS = {
    "classification": "Classify the text. Answer with exactly one of these labels: {labels}.",
    "multi_label": "Classify the text. Answer with every label that applies, separated by '{sep}', "
    "from: {labels}. Answer 'none' if no label applies.",
    "relation": "Classify the semantic relation between the entities marked <e1>...</e1> and <e2>...</e2> "
    "in the text. Answer with exactly one of these labels: {labels}.",
    "tagging": "List the named entities in the text, one per line as 'TYPE: span'. Entity types: {labels}. "
    "Answer 'none' if there are none.",
    "extraction": "Extract these fields from the text and answer with a JSON object: {labels}.",
    "regression": "Rate the text. Answer with {labels}.",
    "pair_classification": "Classify the pair of texts. Answer with exactly one of these labels: {labels}.",
    "pair_regression": "Rate the pair of texts. Answer with {labels}.",
}


def system_of(row: dict[str, Any], spec: DataSpec) -> str | None:
    """The row's own system prompt, else data.system_prompt."""
    return row.get("system") or spec.system_prompt or None


def instruction_user_text(row: dict[str, Any]) -> str:
    extra = row.get("input") or ""
    return f"{row['instruction']}\n\n{extra}" if extra else row["instruction"]


def instruction_messages(row: dict[str, Any], spec: DataSpec) -> list[dict[str, str]]:
    """An instruction row as a chat: [system?, user, assistant]."""
    system = system_of(row, spec)
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [
        {"role": "user", "content": instruction_user_text(row)},
        {"role": "assistant", "content": row["output"]},
    ]


def alpaca_prompt(row: dict[str, Any], spec: DataSpec) -> tuple[str, str]:
    """An instruction row as an Alpaca-style prompt and its completion."""
    template = ALPACA_INPUT if row.get("input") else ALPACA
    prompt = template.format(instruction=row["instruction"], input=row.get("input", ""))
    system = system_of(row, spec)
    return (f"{system}\n\n{prompt}" if system else prompt), row["output"]


def entity_spans(tokens: list[str], tags: list[str]) -> list[tuple[str, str]]:
    """(type, text) entity spans from BIO/IOB2 tags; a stray I-X starts a new span."""
    spans: list[tuple[str, list[str]]] = []
    for token, tag in zip(tokens, tags, strict=True):
        if tag == "O":
            spans.append(("", []))
            continue
        prefix, sep, kind = tag.partition("-")
        if not sep:  # IO scheme: a bare type continues a span of the same type
            prefix, kind = "I", tag
        if prefix == "I" and spans and spans[-1][0] == kind:
            spans[-1][1].append(token)
        else:
            spans.append((kind, [token]))
    return [(kind, " ".join(words)) for kind, words in spans if kind]


def entity_types(labels: tuple[str, ...] | list[str]) -> list[str]:
    """Entity types named by BIO tags, in first-seen order (B-PER, I-PER -> PER)."""
    return list(dict.fromkeys(tag.partition("-")[2] or tag for tag in labels if tag != "O"))


def gold_completion(row: dict[str, Any], layout: str, task: TaskSpec) -> str:
    """The answer text (without the leading space) for a task example."""
    if layout == "tagging":
        lines = [f"{kind}: {text}" for kind, text in entity_spans(row["tokens"], row["tags"])]
        return "\n".join(lines) or NO_ENTITIES
    if layout == "extraction":
        output = row["output"]
        if task.fields:
            output = {name: output.get(name) for name in task.fields}
        return json.dumps(output, sort_keys=True, ensure_ascii=False)
    if layout == "regression":
        return format_targets(row["targets"], target_names(task))
    if task.multi_label:
        return task.label_separator.join(sorted(row["label"])) or NO_ENTITIES
    return row["label"]


def _layout_of(row: dict[str, Any], task: TaskSpec) -> str:
    if task.type == "token_classification":
        return "tagging"
    return {
        "relation_classification": "relation",
        "extraction": "extraction",
        "regression": "regression",
    }.get(task.type, "classification")


def generative_prompt(row: dict[str, Any], task: TaskSpec, spec: DataSpec, labels) -> tuple[str, str]:
    """(prompt, gold completion) for a task row; a prompt_completion row passes through."""
    if task.type == "sft":
        if "prompt" in row:
            return row["prompt"], row["completion"]
        if "instruction" in row:
            return alpaca_prompt(row, spec)
        raise ValueError("generative_prompt needs a task row or an sft prompt_completion/instruction row")
    return task_prompt(row, task, spec, labels), " " + gold_completion(row, _layout_of(row, task), task)


def task_prompt(row: dict[str, Any], task: TaskSpec, spec: DataSpec, labels) -> str:
    """The prompt a generative task model answers (the row needs only its input: ``text``, or ``tokens``
    for tagging), exactly as training wrote it; `predict` and the server prompt new rows with it."""
    layout = _layout_of(row, task)
    text = " ".join(row["tokens"]) if layout == "tagging" else row["text"]
    names = _label_names(layout, task, labels)
    pair = row.get("text_b")
    if spec.prompt_template:
        prompt = spec.prompt_template.replace("{text}", text).replace("{labels}", names)
        prompt = prompt.replace("{text_b}", pair or "")
    else:
        key = "multi_label" if task.multi_label else layout
        key = f"pair_{key}" if pair is not None and f"pair_{key}" in INSTRUCTIONS else key
        instruction = INSTRUCTIONS[key].format(labels=names, sep=task.label_separator)
        if layout == "extraction" and not task.fields:
            instruction = "Extract the information in the text and answer with a JSON object."
        body = f"Text A: {text}\nText B: {pair}" if pair is not None else f"Text: {text}"
        prompt = f"{instruction}\n\n{body}\nAnswer:"
    system = system_of(row, spec)
    return f"{system}\n\n{prompt}" if system else prompt


def _label_names(layout: str, task: TaskSpec, labels) -> str:
    if layout == "regression":
        return _number_answer(target_names(task))
    if layout == "extraction":
        return ", ".join(task.fields or ())
    if layout == "tagging":
        return ", ".join(entity_types(labels or ()))
    return ", ".join(labels or ())


def _number_answer(names: tuple[str, ...]) -> str:
    """What a regression answer looks like, for the instruction (and `{labels}` in a prompt template)."""
    if len(names) == 1:
        return "a number" if names[0] == DEFAULT_TARGET else f"a number ({names[0]})"
    return "'" + "; ".join(f"{name}: <number>" for name in names) + "'"
