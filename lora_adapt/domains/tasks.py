"""What an adapter does with one new input, per task kind: which input it reads, how the input becomes
model input (a prompt, or token ids for a classifier head) and how the model's output becomes a
prediction. `predict`, :class:`~lora_adapt.domains.AdapterSet` and the server share these.

| kind       | adapter                                | input                 | prediction                               |
|------------|----------------------------------------|-----------------------|------------------------------------------|
| generation | sft                                    | messages/prompt/text  | text, finish_reason                      |
| single     | classification head                    | text                  | label, score, probabilities              |
| multi      | multi-label classification head        | text                  | labels, probabilities                    |
| relation   | relation classification head           | text with <e1>/<e2>   | label, score, probabilities              |
| regression | regression head                        | text                  | values (one per target, in data units)   |
| tagging    | token classification head              | tokens (or text)      | entities (type, text, start, end), tags  |
| answer     | classification/relation, generative    | text                  | label (null if unreadable), valid, text  |
| labels     | multi-label, generative                | text                  | labels, valid, text                      |
| entities   | token classification, generative       | tokens (or text)      | entities, valid, text                    |
| extraction | extraction                             | text                  | fields (null if unreadable), valid, text |
| number     | regression, generative                 | text                  | values (null if unreadable), valid, text |

A sentence-pair adapter (trained on rows with ``text_b``) reads ``text`` and ``text_b`` (``text_a`` is read
as ``text``), encoded as training encoded the pair.

A new task kind is one subclass of :class:`HeadKind` or :class:`AnswerKind` added to ``KINDS``.
Prompts come from ``data.prompts`` (as training wrote them), answers are read by
``evaluation.scoring.parse_answer`` (as `eval` scores them), head logits decode as `eval` decodes them.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from ..data.prompts import alpaca_prompt, instruction_messages, system_of, task_prompt
from ..errors import UsageError
from ..recipe.derived import MULTI_LABEL_LOGIT, target_names
from ..rundir import AdapterInfo
from .prompting import Prompting

DEFAULT_TOP_K = 5
"""Probabilities reported per classified input (the most likely labels); 0 = every label."""


class TaskKind:
    """One task kind: reads an input row, builds model input, turns model output into a prediction."""

    name: ClassVar[str]
    head: ClassVar[bool]
    ranks_labels: ClassVar[bool] = False
    """Answers with label probabilities (the ``top_k`` most likely of them): classifier and relation heads."""

    def __init__(self, prompting: Prompting, labels: tuple[str, ...] | None):
        self.prompting = prompting
        self.labels = tuple(labels or ())

    def row(self, raw: dict[str, Any] | str) -> dict[str, Any]:
        """A canonical input row from a request row (or plain text); errors name what is missing."""
        row = {"text": raw} if isinstance(raw, str) else dict(raw)
        if "text" not in row and "text_a" in row:
            row["text"] = row.pop("text_a")
        if not isinstance(row.get("text"), str) or not row["text"].strip():
            raise UsageError(
                f"{_where(row)}this {self.name} adapter reads a non-empty `text`",
                hint="give each input a `text` field (or --text)",
            )
        if self.prompting.pair and (not isinstance(row.get("text_b"), str) or not row["text_b"].strip()):
            raise UsageError(
                f"{_where(row)}this {self.name} adapter was trained on sentence pairs: it reads `text` and "
                "a non-empty `text_b`",
                hint='give each input both texts, e.g. {"text": "...", "text_b": "..."}',
            )
        if not self.prompting.pair:
            row.pop("text_b", None)  # a single-text adapter never sees a second text
        return row

    def input_text(self, row: dict[str, Any]) -> str:
        """The text a router reads to pick the adapter for this row."""
        return row["text"] if "text_b" not in row else f"{row['text']} {row['text_b']}"


class HeadKind(TaskKind):
    """A classifier head: token ids in, one logit vector (or one per word) out."""

    head = True

    def encode(self, row: dict[str, Any], tokenizer) -> dict[str, Any]:
        """``input_ids``/``attention_mask`` truncated as training truncated them (data.max_seq_length), and
        ``input_tokens``: the input's length before that (a truncated input is said so in the answer)."""
        limit = self.prompting.max_seq_length
        texts = (row["text"], row["text_b"]) if "text_b" in row else (row["text"],)
        # a pair is cut as data/tokenization.py cuts it
        enc = tokenizer(*texts, truncation="longest_first" if len(texts) == 2 else True, max_length=limit)
        out = {
            "input_ids": list(enc["input_ids"]),
            "attention_mask": list(enc["attention_mask"]),
            "input_tokens": len(tokenizer(*texts)["input_ids"]),
        }
        if "token_type_ids" in enc:
            out["token_type_ids"] = list(enc["token_type_ids"])
        return out

    def decode(self, logits, row: dict[str, Any], encoded: dict[str, Any], top_k: int) -> dict[str, Any]:
        raise NotImplementedError


class SingleLabel(HeadKind):
    name = "single"
    ranks_labels = True

    def decode(self, logits, row, encoded, top_k):
        probs = _softmax(list(map(float, logits)))
        best = max(range(len(probs)), key=probs.__getitem__)
        return {
            "label": self.labels[best],
            "score": round(probs[best], 6),
            "probabilities": _top(dict(zip(self.labels, probs, strict=True)), top_k),
        }


class Relation(SingleLabel):
    name = "relation"


class Numbers(TaskKind):
    """Regression: ``labels`` are the target names; ``scaling`` is what the head trained on (undone when
    decoding) and ``training_mean`` the value `eval` scores an unreadable generated number as."""

    def __init__(
        self,
        prompting: Prompting,
        labels: tuple[str, ...] | None,
        *,
        scaling: dict[str, Any] | None = None,
        training_mean: list[float] | None = None,
    ):
        super().__init__(prompting, labels)
        self.scaling, self.training_mean = scaling, training_mean


class Regression(Numbers, HeadKind):
    """One output per target; the head's training scaling undone (values in the data's units)."""

    name = "regression"

    def decode(self, logits, row, encoded, top_k):
        from ..evaluation.prediction import decode_regression

        values = decode_regression([logits], self.scaling)[0]
        return {"values": {name: round(v, 6) for name, v in zip(self.labels, values, strict=True)}}


class MultiLabel(HeadKind):
    name = "multi"
    ranks_labels = True

    def decode(self, logits, row, encoded, top_k):
        values = list(map(float, logits))
        probs = {label: 1.0 / (1.0 + math.exp(-x)) for label, x in zip(self.labels, values, strict=True)}
        chosen = [label for label, x in zip(self.labels, values, strict=True) if x > MULTI_LABEL_LOGIT]
        return {"labels": sorted(chosen), "probabilities": _top(probs, top_k)}


class WordsInput(TaskKind):
    """Tagging reads words: ``tokens``, or a ``text`` split on whitespace."""

    def row(self, raw):
        row = {"text": raw} if isinstance(raw, str) else dict(raw)
        if "tokens" not in row and isinstance(row.get("text"), str):
            row["tokens"] = row["text"].split()
        tokens = row.get("tokens")
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
            raise UsageError(
                f"{_where(row)}this tagging adapter reads `tokens` (a list of words) or a `text`",
                hint="give each input `tokens` or `text` (split on whitespace)",
            )
        return row

    def input_text(self, row):
        return " ".join(row["tokens"])


class Tagging(WordsInput, HeadKind):
    """Word tags from the first sub-word of each word (as trained); truncated words are tagged ``O``."""

    name = "tagging"

    def encode(self, row, tokenizer):
        enc = tokenizer(
            row["tokens"], is_split_into_words=True, truncation=True, max_length=self.prompting.max_seq_length
        )
        words = enc.word_ids()
        firsts = [i for i, w in enumerate(words) if w is not None and (i == 0 or words[i - 1] != w)]
        return {
            "input_ids": list(enc["input_ids"]),
            "attention_mask": list(enc["attention_mask"]),
            "positions": firsts,
            "input_tokens": len(tokenizer(row["tokens"], is_split_into_words=True)["input_ids"]),
        }

    def decode(self, logits, row, encoded, top_k):
        n = len(row["tokens"])
        tags = [
            self.labels[max(range(len(v)), key=lambda j, v=v: v[j])] for v in logits[encoded["positions"]]
        ]
        tags = (tags + ["O"] * n)[:n]
        return {"entities": entities_of(row["tokens"], tags), "tags": tags}


class AnswerKind(TaskKind):
    """A causal LM prompted as trained; its answer is generated and then read."""

    head = False

    def prompt(self, row: dict[str, Any], tokenizer) -> tuple[str, bool]:
        """(prompt text, add the tokenizer's special tokens?) as training tokenized it."""
        return task_prompt(row, self.prompting.task, self.prompting.data, self.labels), True

    def budget(self, requested: int | None, tokenizer) -> int:
        """New tokens to generate: the recipe's evaluation budget (as `eval` answered), or the request's."""
        return self.prompting.max_new_tokens

    def read(self, text: str, row: dict[str, Any]) -> dict[str, Any]:
        from ..evaluation.scoring import parse_answer

        value = parse_answer(text, self.answer_kind, self.labels, self.prompting.task)
        return {self.field: value, "valid": value is not None}

    answer_kind: ClassVar[str] = "single"
    field: ClassVar[str] = "label"


class LabelAnswer(AnswerKind):
    name = "answer"

    def budget(self, requested, tokenizer):
        from ..evaluation.generation import answer_budget

        return answer_budget(tokenizer, self.labels, self.prompting.max_new_tokens)


class LabelsAnswer(AnswerKind):
    name = "labels"
    answer_kind = "multi"
    field = "labels"


class EntitiesAnswer(WordsInput, AnswerKind):
    name = "entities"
    answer_kind = "entities"
    field = "entities"

    def read(self, text, row):
        out = super().read(text, row)
        if out["entities"] is not None:
            out["entities"] = [{"type": kind, "text": span} for kind, span in out["entities"]]
        return out


class NumberAnswer(Numbers, AnswerKind):
    """A generative regression adapter writes its number(s); read strictly as `eval` reads them."""

    name = "number"
    answer_kind = "regression"
    field = "values"

    def read(self, text, row):
        out = super().read(text, row)
        if out["values"] is not None:
            out["values"] = dict(zip(self.labels, out["values"], strict=True))
        return out


class Extraction(AnswerKind):
    name = "extraction"
    answer_kind = "extraction"
    field = "fields"


class Generation(AnswerKind):
    """An sft adapter (or the base model) writing free text. Inputs, as trained:

    - ``messages``: a chat, rendered with the adapter's chat template (its tokenizer's, or data.chat_template);
    - ``instruction`` (+ ``input``): a chat when the adapter was trained on chats, else the Alpaca prompt;
    - ``prompt``: the user's turn of a chat adapter, else the prompt of a prompt/completion adapter;
    - ``text``: raw text to continue (OpenAI completions);
    - plain text (``--text``): whichever of the above the adapter was trained on."""

    name = "generation"
    READS: ClassVar[tuple[str, ...]] = ("messages", "instruction", "prompt", "text")

    def row(self, raw):
        row = {self._text_key(): raw} if isinstance(raw, str) else dict(raw)
        if not any(isinstance(row.get(k), (str, list)) and row.get(k) for k in self.READS):
            raise UsageError(
                f"{_where(row)}this generative adapter reads one of {', '.join(self.READS)}",
                hint="give each input `messages` (a chat), `instruction`, `prompt` or `text`",
            )
        if "messages" in row:
            _check_messages(row)
        return row

    def _text_key(self) -> str:
        if self.prompting.source_format == "instruction":
            return "instruction"
        return "prompt" if self.prompting.layout in ("chat", "prompt_completion") else "text"

    def input_text(self, row):
        if isinstance(row.get("messages"), list):
            return "\n".join(m["content"] for m in row["messages"] if m.get("role") == "user")
        return str(row.get("instruction") or row.get("prompt") or row.get("text"))

    def prompt(self, row, tokenizer):
        data = self.prompting.data
        chat = self.prompting.layout == "chat"
        if "messages" in row:
            return self._chat(list(row["messages"]), row, tokenizer)
        if "instruction" in row:
            if chat:
                return self._chat(instruction_messages({**row, "output": ""}, data)[:-1], row, tokenizer)
            return alpaca_prompt({**row, "output": ""}, data)[0], True
        if "prompt" in row:
            if chat:
                return self._chat([{"role": "user", "content": row["prompt"]}], row, tokenizer)
            system = system_of(row, data)
            return (f"{system}\n\n{row['prompt']}" if system else row["prompt"]), True
        return row["text"], True

    def _chat(self, messages: list[dict[str, str]], row, tokenizer) -> tuple[str, bool]:
        from ..data.templates import resolve_chat_template

        template = resolve_chat_template(tokenizer, self.prompting.data.chat_template)
        if not template:
            raise UsageError(
                "this model's tokenizer has no chat template, so it cannot answer chat messages",
                hint="send a raw prompt (completions) instead, or train with data.chat_template set",
            )
        system = system_of(row, self.prompting.data)
        if system and messages[0].get("role") != "system":
            messages = [{"role": "system", "content": system}, *messages]
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, chat_template=template
        )
        return text, False  # a chat template writes its own special tokens (as in training)

    def budget(self, requested, tokenizer):
        from ..recipe.serving import GenerationSpec

        return requested if requested is not None else GenerationSpec().max_new_tokens

    def read(self, text, row):
        return {"text": text}


def _check_messages(row: dict[str, Any]) -> None:
    messages = row["messages"]
    ok = all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages
    )
    if not ok or not messages:
        raise UsageError(
            f"{_where(row)}`messages` must be a non-empty list of {{role, content}} objects",
            hint='e.g. [{"role": "user", "content": "Hello"}]',
        )
    if messages[-1]["role"] == "assistant":
        raise UsageError(
            f"{_where(row)}the conversation ends with an assistant turn: there is nothing to answer",
            hint="end the messages with the user's turn",
        )


KINDS: dict[str, type[TaskKind]] = {
    k.name: k
    for k in (
        SingleLabel,
        Relation,
        Regression,
        MultiLabel,
        Tagging,
        LabelAnswer,
        LabelsAnswer,
        EntitiesAnswer,
        NumberAnswer,
        Extraction,
        Generation,
    )
}


KIND_OF: dict[str, tuple[str | None, str | None]] = {
    "sft": ("generation", None),
    "extraction": ("extraction", None),
    "classification": ("answer", "single"),
    "relation_classification": ("answer", "relation"),
    "token_classification": ("entities", "tagging"),
    "regression": ("number", "regression"),
}
"""Task type -> (kind in generative mode, kind in head mode); multi-label classification: labels / multi."""


def kind_name(task_type: str, head: bool, multi_label: bool) -> str | None:
    """The kind that runs an adapter of this task type and mode (None: not supported)."""
    if task_type == "classification" and multi_label:
        return "multi" if head else "labels"
    generative, with_head = KIND_OF.get(task_type, (None, None))
    return with_head if head else generative


def task_kind(info: AdapterInfo) -> TaskKind:
    """The :class:`TaskKind` that runs ``info`` (a task type or mode with no kind is refused by name)."""
    prompting = Prompting.of(info)
    name = kind_name(info.task_type, info.head != "causal_lm", info.multi_label)
    if name is None:
        raise UsageError(
            f"adapter {info.name!r} is a {info.task_type} adapter ({info.mode} mode), which predict and "
            "serve do not run",
            hint=f"supported: {', '.join(f'{t} ({g} / {h})' for t, (g, h) in KIND_OF.items())}",
        )
    if name in ("regression", "number"):
        mean = (info.task.get("targets") or {}).get("mean")
        return (Regression if name == "regression" else NumberAnswer)(
            prompting, target_names(prompting.task), scaling=info.target_scaling, training_mean=mean
        )
    return KINDS[name](prompting, prompting.task.labels)


def entities_of(tokens: list[str], tags: list[str]) -> list[dict[str, Any]]:
    """Entities decoded from BIO tags as `eval` decodes them (seqeval, conlleval rules), with word spans."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [
        {"type": kind, "text": " ".join(tokens[start : end + 1]), "start": start, "end": end + 1}
        for kind, start, end in get_entities(list(tags))
    ]


def _softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def _top(probs: dict[str, float], k: int) -> dict[str, float]:
    ranked = sorted(probs.items(), key=lambda kv: -kv[1])
    return {label: round(p, 6) for label, p in (ranked[:k] if k > 0 else ranked)}


def _where(row: dict[str, Any]) -> str:
    where = row.get("_where") or row.get("id")
    return f"{where}: " if where is not None else ""


__all__ = ["DEFAULT_TOP_K", "KINDS", "Prompting", "TaskKind", "entities_of", "kind_name", "task_kind"]
