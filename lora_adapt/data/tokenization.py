"""Canonical rows -> token ids and masks.

Generative layouts give ``input_ids`` and ``completion_mask`` (1 = trained). Each example is a text
plus the character spans to train; a fast tokenizer's offsets turn spans into a mask over one
tokenization of the whole text (so the prompt/answer boundary tokenizes as in running text). Chat
spans come from rendering the template on message prefixes, so any template works. EOS is appended
to every example unless its trained tokens already hold it, and it is trained.

Head layouts give ``input_ids``, ``attention_mask`` and ``labels`` (plus ``token_type_ids`` when the
tokenizer makes them, as BERT-family tokenizers do for sentence pairs); text is truncated to
``data.max_seq_length`` (counted) whatever ``cleaning.overlength`` says, since a classifier still
learns from the start of a long text and evaluation must score every row. A sentence pair is encoded
with the tokenizer's pair encoding (``[CLS] a [SEP] b [SEP]`` for BERT), truncating the longer text
first. Regression labels are the row's targets, scaled as ``ctx["scaling"]`` says (data/targets.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError
from ..recipe.schema import DataSpec
from .prompts import alpaca_prompt, generative_prompt, instruction_messages, system_of
from .sources import WHERE
from .targets import scale

Rows = list[dict[str, Any]]
Span = tuple[int, int]


@dataclass
class SplitCounts:
    """What tokenizing one split did."""

    examples: int = 0
    dropped_overlength: int = 0
    dropped_completion_truncated: int = 0
    truncated: int = 0
    eos_trained: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    max_length: int = 0
    columns: dict[str, list] = field(default_factory=dict)

    def add(self, part: SplitCounts) -> None:
        """Count a batch's tokenization into this split's (its columns are not kept)."""
        for name in (
            "examples",
            "dropped_overlength",
            "dropped_completion_truncated",
            "truncated",
            "eos_trained",
            "tokens",
            "trained_tokens",
        ):
            setattr(self, name, getattr(self, name) + getattr(part, name))
        self.max_length = max(self.max_length, part.max_length)

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "columns"}
        out["eos_trained_share"] = round(self.eos_trained / self.examples, 4) if self.examples else None
        return out


def generative_layout(layout: str, template: str | None) -> str:
    """The trained layout: instruction rows become chats when a chat template is available."""
    if layout == "instruction":
        return "chat" if template else "prompt_completion"
    return layout


def example_spans(row: dict[str, Any], layout: str, ctx: dict[str, Any]) -> tuple[str, list[Span], bool]:
    """(text, trained character spans, is_chat) for one row."""
    spec: DataSpec = ctx["spec"]
    if layout == "completion":
        return row["text"], [(0, len(row["text"]))], False
    if layout in ("chat", "instruction") and ctx["template"]:
        messages = instruction_messages(row, spec) if layout == "instruction" else _with_system(row, spec)
        return (*chat_spans(messages, ctx["tokenizer"], ctx["template"]), True)
    if layout == "instruction":
        prompt, completion = alpaca_prompt(row, spec)
    elif layout == "prompt_completion":
        system = system_of(row, spec)
        prompt = f"{system}\n\n{row['prompt']}" if system else row["prompt"]
        completion = row["completion"]
    elif layout == "chat":
        raise DataError(
            "the data is chat messages but the tokenizer has no chat template",
            hint="set `data.chat_template: chatml` (or llama3, zephyr)",
        )
    else:
        prompt, completion = generative_prompt(row, ctx["task"], spec, ctx["labels"])
    return prompt + completion, [(len(prompt), len(prompt) + len(completion))], False


def _with_system(row: dict[str, Any], spec: DataSpec) -> list[dict[str, str]]:
    messages = row["messages"]
    system = system_of(row, spec)
    if system and not (messages and messages[0]["role"] == "system"):
        messages = [{"role": "system", "content": system}, *messages]
    return messages


def chat_spans(messages: list[dict[str, str]], tokenizer, template: str) -> tuple[str, list[Span]]:
    """Render a chat and find each assistant turn (with its end-of-turn marker) as a character span.

    Turns after the last assistant message are not rendered (nothing to learn from them).
    """
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    messages = messages[: last + 1]
    full = _render(tokenizer, messages, False, template)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], True, template) if i else ""
        upto = _render(tokenizer, messages[: i + 1], False, template)
        start = len(before) if full.startswith(before) else _common_prefix(before, full)
        end = len(upto) if full.startswith(upto) else start + max(len(upto) - len(before), 0)
        spans.append((start, end))
    return full, spans


def _render(tokenizer, messages: list[dict[str, str]], generation: bool, template: str) -> str:
    try:
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation, chat_template=template
        )
    except (
        Exception
    ) as exc:  # jinja2 raises TemplateError subclasses and plain exceptions from raise_exception()
        raise DataError(
            f"the chat template failed on a conversation: {exc}",
            hint="check the roles the template accepts (some reject 'system'), or set data.chat_template",
        ) from None


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def encode_spans(tokenizer, text: str, spans: list[Span], special: bool) -> tuple[list[int], list[int]]:
    """Token ids of ``text`` and a mask with 1 on tokens overlapping a span."""
    return encode_many(tokenizer, [(text, spans)], special)[0]


def encode_many(
    tokenizer, items: list[tuple[str, list[Span]]], special: bool
) -> list[tuple[list[int], list[int]]]:
    """``encode_spans`` for many texts in one tokenizer call (a fast tokenizer encodes the batch at once;
    each text's ids are those it has alone)."""
    if not items:
        return []
    if not getattr(tokenizer, "is_fast", False):
        return [_encode_pieces(tokenizer, text, spans, special) for text, spans in items]
    texts = [text for text, _ in items]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.truncation is None and backend.padding is None:
        # what tokenizer(texts, return_offsets_mapping=True) encodes, without its per-text dict conversion
        encodings = backend.encode_batch(texts, add_special_tokens=special)
        pairs = [(e.ids, e.offsets) for e in encodings]
    else:
        enc = tokenizer(texts, add_special_tokens=special, return_offsets_mapping=True)
        pairs = list(zip(enc["input_ids"], enc["offset_mapping"], strict=True))
    out = []
    for (ids, offsets), (_, spans) in zip(pairs, items, strict=True):
        if len(spans) == 1:
            ((start, end),) = spans
            mask = [1 if s < end and e > start else 0 for s, e in offsets]
        else:
            mask = [int(any(s < end and e > start for start, end in spans)) for s, e in offsets]
        out.append((ids if isinstance(ids, list) else list(ids), mask))
    return out


def _encode_pieces(tokenizer, text: str, spans: list[Span], special: bool) -> tuple[list[int], list[int]]:
    """Slow tokenizers (no offsets): tokenize masked and trained pieces separately."""
    ids: list[int] = []
    mask: list[int] = []
    bounds = sorted({0, len(text), *[x for span in spans for x in span]})
    for start, end in zip(bounds, bounds[1:], strict=False):
        piece = tokenizer(text[start:end], add_special_tokens=False)["input_ids"]
        trained = int(any(s <= start and end <= e for s, e in spans))
        ids += piece
        mask += [trained] * len(piece)
    bos = tokenizer.bos_token_id
    if special and bos is not None and tokenizer("a")["input_ids"][:1] == [bos]:
        ids, mask = [bos, *ids], [0, *mask]
    return ids, mask


def add_eos(ids: list[int], mask: list[int], eos: int, chat: bool) -> tuple[list[int], list[int]]:
    """EOS trained at the end; a chat whose trained turns hold it already is left as is."""
    if ids and ids[-1] == eos:
        mask[-1] = 1
        return ids, mask
    if chat and any(t == eos and m for t, m in zip(ids, mask, strict=True)):
        return ids, mask
    return [*ids, eos], [*mask, 1]


def tokenize_generative(rows: Rows, layout: str, ctx: dict[str, Any]) -> SplitCounts:
    """input_ids/completion_mask for one split, applying cleaning.overlength."""
    spec: DataSpec = ctx["spec"]
    tokenizer = ctx["tokenizer"]
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError(
            "the tokenizer has no eos_token, so the model could not learn to stop",
            hint="set tokenizer.eos_token (model.tokenizer) to the model's end-of-text token",
        )
    counts = SplitCounts(columns={"input_ids": [], "completion_mask": []})
    examples = []
    for row in rows:
        try:
            examples.append(example_spans(row, layout, ctx))
        except DataError as exc:
            raise DataError(f"{row.get(WHERE, '?')}: {exc.message}", hint=exc.hint) from None
    encoded: dict[int, tuple[list[int], list[int]]] = {}
    for chat in (False, True):
        which = [i for i, example in enumerate(examples) if example[2] is chat]
        items = [(examples[i][0], examples[i][1]) for i in which]
        encoded.update(zip(which, encode_many(tokenizer, items, special=not chat), strict=True))
    for i, (_, _, chat) in enumerate(examples):
        ids, mask = encoded[i]
        if layout == "completion":
            mask = [1] * len(ids)
        ids, mask = add_eos(ids, mask, eos, chat)
        kept = _fit_length(ids, mask, spec, counts)
        if kept is not None:
            _record(kept[0], kept[1], eos, spec.loss_on == "all", counts)
    return counts


def _fit_length(ids: list[int], mask: list[int], spec: DataSpec, counts: SplitCounts):
    limit = spec.max_seq_length
    if len(ids) <= limit:
        return ids, mask
    if spec.cleaning.overlength == "drop":
        counts.dropped_overlength += 1
        return None
    if not any(mask[:limit]):
        counts.dropped_completion_truncated += 1
        return None
    counts.truncated += 1
    return ids[:limit], mask[:limit]


def _record(ids: list[int], mask: list[int], eos: int, all_tokens: bool, counts: SplitCounts) -> None:
    if all_tokens:
        mask = [1] * len(ids)
    counts.columns["input_ids"].append(ids)
    counts.columns["completion_mask"].append(mask)
    counts.examples += 1
    counts.tokens += len(ids)
    counts.trained_tokens += sum(mask)
    counts.max_length = max(counts.max_length, len(ids))
    counts.eos_trained += bool(ids[-1] == eos and mask[-1]) or any(
        t == eos and m for t, m in zip(ids, mask, strict=True)
    )


def tokenize_head(rows: Rows, layout: str, labels: tuple[str, ...], ctx: dict[str, Any]) -> SplitCounts:
    """input_ids/attention_mask/labels for a classifier head (text truncated to max_seq_length)."""
    tokenizer, limit = ctx["tokenizer"], ctx["spec"].max_seq_length
    index = {label: i for i, label in enumerate(labels)}
    if layout == "tagging":
        counts = _tokenize_tags(rows, tokenizer, limit, index)
    else:
        enc = encode_texts(tokenizer, rows, limit)
        counts = SplitCounts(columns=model_columns(enc, pair=bool(rows) and "text_b" in rows[0]))
        counts.columns["labels"] = [
            scale(row["targets"], ctx["scaling"])
            if layout == "regression"
            else _label_target(row["label"], index)
            for row in rows
        ]
        counts.truncated = _count_truncated(enc, limit)
    ids = counts.columns["input_ids"]
    counts.examples = len(ids)
    counts.tokens = sum(len(x) for x in ids)
    counts.max_length = max((len(x) for x in ids), default=0)
    return counts


def encode_texts(tokenizer, rows: Rows, limit: int):
    """The tokenizer's encoding of each row's text, or of its text pair (``text``, ``text_b``)."""
    first = [row["text"] for row in rows]
    if rows and "text_b" in rows[0]:
        return tokenizer(first, [row["text_b"] for row in rows], truncation="longest_first", max_length=limit)
    return tokenizer(first, truncation=True, max_length=limit)


def model_columns(enc, *, pair: bool) -> dict[str, list]:
    """input_ids, attention_mask and, for a pair whose tokenizer makes them, token_type_ids (a single text's
    are all 0, the model's default, so they are not stored)."""
    names = ("input_ids", "attention_mask", "token_type_ids") if pair else ("input_ids", "attention_mask")
    return {name: list(enc[name]) for name in names if name in enc}


def _label_target(label: str | list[str], index: dict[str, int]) -> int | list[float]:
    if isinstance(label, list):
        hot = [0.0] * len(index)
        for item in label:
            hot[index[item]] = 1.0
        return hot
    return index[label]


def _count_truncated(enc, limit: int) -> int:
    encodings = getattr(enc, "encodings", None)
    if encodings:
        return sum(bool(e.overflowing) for e in encodings)
    return sum(len(x) >= limit for x in enc["input_ids"])


def _tokenize_tags(rows: Rows, tokenizer, limit: int, index: dict[str, int]) -> SplitCounts:
    """Word-level tags -> sub-word labels: the first sub-word of a word carries its tag, the rest -100."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            "token classification needs a fast tokenizer (word_ids() maps sub-words to words)",
            hint="use a model whose tokenizer has a tokenizer.json (a fast tokenizer)",
        )
    enc = tokenizer(
        [row["tokens"] for row in rows], is_split_into_words=True, truncation=True, max_length=limit
    )
    targets, truncated = [], 0
    for i, row in enumerate(rows):
        words = enc.word_ids(i)
        previous = None
        target = []
        for word in words:
            target.append(-100 if word is None or word == previous else index[row["tags"][word]])
            previous = word
        targets.append(target)
        truncated += max((w for w in words if w is not None), default=-1) < len(row["tokens"]) - 1
    counts = SplitCounts(
        columns={
            "input_ids": list(enc["input_ids"]),
            "attention_mask": list(enc["attention_mask"]),
            "labels": targets,
        }
    )
    counts.truncated = truncated
    return counts
