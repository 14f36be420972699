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
from itertools import chain
from typing import Any

import numpy as np

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


class Flat:
    """A batch's token ids and masks as flat arrays: row ``i`` is ``ids[starts[i]:starts[i] + lengths[i]]``
    (no Python object per token, so a batch costs a few array operations whatever its length)."""

    def __init__(self, ids: np.ndarray, mask: np.ndarray, lengths: np.ndarray):
        self.ids, self.mask, self.lengths = ids, mask, lengths

    @classmethod
    def of_lists(cls, ids: list[list[int]], mask: list[list[int]]) -> Flat:
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        total = int(lengths.sum())
        return cls(
            np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=total),
            np.fromiter(chain.from_iterable(mask), dtype=np.int64, count=total),
            lengths,
        )

    def rows(self) -> np.ndarray:
        """Each token's row."""
        return np.repeat(np.arange(len(self.lengths)), self.lengths)

    def positions(self, rows: np.ndarray) -> np.ndarray:
        """Each token's position in its row."""
        starts = np.cumsum(self.lengths) - self.lengths
        return np.arange(len(self.ids)) - starts[rows]

    def take(self, order: np.ndarray) -> Flat:
        """The rows in ``order``."""
        starts = np.cumsum(self.lengths) - self.lengths
        lengths = self.lengths[order]
        picked = np.repeat(starts[order] - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())
        return Flat(self.ids[picked], self.mask[picked], lengths)

    def columns(self) -> dict[str, Any]:
        import pyarrow as pa

        offsets = pa.array(np.concatenate([[0], np.cumsum(self.lengths)]), pa.int32())
        return {
            "input_ids": pa.ListArray.from_arrays(offsets, pa.array(self.ids)),
            "completion_mask": pa.ListArray.from_arrays(offsets, pa.array(self.mask)),
        }


def encode_flat(tokenizer, items: list[tuple[str, list[Span]]], special: bool, masks: bool = True) -> Flat:
    """``encode_many``'s ids and masks as one ``Flat`` batch (``masks=False``: all ones, and the tokenizer's
    offsets are not read)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if (
        not items
        or not getattr(tokenizer, "is_fast", False)
        or backend is None
        or backend.truncation is not None
        or backend.padding is not None
    ):
        pairs = encode_many(tokenizer, items, special)
        flat = Flat.of_lists([ids for ids, _ in pairs], [mask for _, mask in pairs])
        if not masks:
            flat.mask[:] = 1
        return flat
    encodings = backend.encode_batch([text for text, _ in items], add_special_tokens=special)
    ids = [e.ids for e in encodings]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    total = int(lengths.sum())
    flat = Flat(
        np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=total), np.ones(total, np.int64), lengths
    )
    if masks:
        mask = _tail_mask(backend, encodings, items, flat, special)
        flat.mask = mask if mask is not None else _offsets_mask(encodings, items, flat)
    return flat


def _offsets_mask(encodings, items: list[tuple[str, list[Span]]], flat: Flat) -> np.ndarray:
    offsets = np.fromiter(
        chain.from_iterable(chain.from_iterable(e.offsets for e in encodings)),
        dtype=np.int64,
        count=2 * len(flat.ids),
    ).reshape(-1, 2)
    return _span_mask(offsets, [spans for _, spans in items], flat.rows())


CHECKED_ROWS = 16
"""Rows of each batch whose tail mask is checked against their offsets' (``_tail_mask``)."""


def _tail_mask(
    backend, encodings, items: list[tuple[str, list[Span]]], flat: Flat, special: bool
) -> np.ndarray | None:
    """The offsets rule's mask without reading every token's offsets, when every row trains one span that
    runs to the end of its text (the completion, instruction, prompt/completion and task layouts): a token
    overlaps that span if it is at or after the first token holding one of the span's characters
    (``Encoding.char_to_token``), and is not one of the special tokens the tokenizer appends. Reading each
    token's offsets as Python tuples was a tenth of preparing instruction data. None (use the offsets) for
    other rows (chats: several spans), or a tokenizer whose offsets disagree on the batch's first rows."""
    firsts = np.empty(len(items), dtype=np.int64)
    for i, (encoding, (text, spans)) in enumerate(zip(encodings, items, strict=True)):
        if len(spans) != 1 or spans[0][1] != len(text):
            return None
        firsts[i] = _first_token_from(encoding, spans[0][0], len(text))
    appended = _appended_specials(backend, special)
    rows = flat.rows()
    positions = flat.positions(rows)
    mask = ((positions >= firsts[rows]) & (positions < (flat.lengths - appended)[rows])).astype(np.int64)
    head = min(CHECKED_ROWS, len(items))
    size = int(flat.lengths[:head].sum())
    checked = _offsets_mask(
        encodings[:head], items[:head], Flat(flat.ids[:size], mask[:size], flat.lengths[:head])
    )
    return mask if np.array_equal(checked, mask[:size]) else None


def _first_token_from(encoding, start: int, end: int) -> int:
    """The first token holding a character of ``text[start:end]``; characters no token holds (spaces a BERT
    pre-tokenizer drops) are skipped. The encoding's length when there is none."""
    for char in range(start, end):
        token = encoding.char_to_token(char)
        if token is not None:
            return token
    return len(encoding.ids)


def _appended_specials(backend, special: bool) -> int:
    """How many special tokens the tokenizer's post-processor puts after a text ([SEP] for BERT, 0 for most
    decoders)."""
    if not special:
        return 0
    bare = backend.encode("a", add_special_tokens=False).ids
    full = backend.encode("a", add_special_tokens=True).ids
    for lead in range(len(full) - len(bare) + 1):
        if full[lead : lead + len(bare)] == bare:
            return len(full) - lead - len(bare)
    return 0


def _span_mask(offsets: np.ndarray, spans: list[list[Span]], rows: np.ndarray) -> np.ndarray:
    """1 on each token whose character offsets overlap one of its row's spans (``encode_many``'s rule)."""
    width = max(map(len, spans), default=0)
    if width == 1 and all(len(row) == 1 for row in spans):
        bounds = np.array([row[0] for row in spans], dtype=np.int64).reshape(-1, 1, 2)
    else:
        bounds = np.zeros((len(spans), max(width, 1), 2), dtype=np.int64)  # (0, 0) spans overlap nothing
        for i, row in enumerate(spans):
            if row:
                bounds[i, : len(row)] = row
    mask = np.zeros(len(offsets), dtype=bool)
    starts, ends = offsets[:, 0], offsets[:, 1]
    for k in range(width):
        mask |= (starts < bounds[rows, k, 1]) & (ends > bounds[rows, k, 0])
    return mask.astype(np.int64)


def tokenize_generative(rows: Rows, layout: str, ctx: dict[str, Any]) -> SplitCounts:
    """input_ids/completion_mask for one split, applying cleaning.overlength (columns: Arrow list arrays)."""
    spec: DataSpec = ctx["spec"]
    tokenizer = ctx["tokenizer"]
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError(
            "the tokenizer has no eos_token, so the model could not learn to stop",
            hint="set tokenizer.eos_token (model.tokenizer) to the model's end-of-text token",
        )
    counts = SplitCounts()
    examples = []
    for row in rows:
        try:
            examples.append(example_spans(row, layout, ctx))
        except DataError as exc:
            raise DataError(f"{row.get(WHERE, '?')}: {exc.message}", hint=exc.hint) from None
    chat = np.fromiter((example[2] for example in examples), dtype=bool, count=len(examples))
    parts, order = [], []
    for flag in (False, True):
        which = np.flatnonzero(chat == flag)
        if len(which) or (not flag and not len(examples)):
            items = [(examples[i][0], examples[i][1]) for i in which]
            parts.append(encode_flat(tokenizer, items, special=not flag, masks=layout != "completion"))
            order.append(which)
    flat = parts[0] if len(parts) == 1 else _merge(parts, np.concatenate(order))
    flat = _with_eos(flat, eos, chat)
    flat = _fit_lengths(flat, spec, counts)
    if spec.loss_on == "all":
        flat.mask[:] = 1
    _count(flat, eos, counts)
    counts.columns = flat.columns()
    return counts


def _merge(parts: list[Flat], order: np.ndarray) -> Flat:
    """Batches encoded apart (``order``: the row each of their rows is, in turn) -> one, in row order."""
    joined = Flat(
        np.concatenate([p.ids for p in parts]),
        np.concatenate([p.mask for p in parts]),
        np.concatenate([p.lengths for p in parts]),
    )
    return joined.take(np.argsort(order, kind="stable"))


def _with_eos(flat: Flat, eos: int, chat: np.ndarray) -> Flat:
    """EOS trained at the end of every row: a row ending in EOS has it trained, a chat whose trained turns
    hold it already is left as is, any other row gets one appended."""
    rows = flat.rows()
    ends = np.cumsum(flat.lengths)
    ends_eos = np.zeros(len(ends), dtype=bool)
    full = flat.lengths > 0
    ends_eos[full] = flat.ids[ends[full] - 1] == eos
    flat.mask[ends[ends_eos] - 1] = 1
    trained_eos = np.bincount(rows[(flat.ids == eos) & (flat.mask != 0)], minlength=len(ends)) > 0
    append = ~ends_eos & ~(chat & trained_eos)
    at = ends[append]
    return Flat(np.insert(flat.ids, at, eos), np.insert(flat.mask, at, 1), flat.lengths + append)


def _fit_lengths(flat: Flat, spec: DataSpec, counts: SplitCounts) -> Flat:
    """``cleaning.overlength`` on every row: longer rows dropped, or truncated unless nothing trained is left."""
    limit = spec.max_seq_length
    over = flat.lengths > limit
    if not over.any():
        return flat
    rows = flat.rows()
    head = flat.positions(rows) < limit
    if spec.cleaning.overlength == "drop":
        counts.dropped_overlength += int(over.sum())
        keep = ~over
    else:
        trained = np.bincount(rows[head & (flat.mask != 0)], minlength=len(over)) > 0
        counts.dropped_completion_truncated += int((over & ~trained).sum())
        counts.truncated += int((over & trained).sum())
        keep = ~over | trained
    tokens = keep[rows] & head
    return Flat(flat.ids[tokens], flat.mask[tokens], np.minimum(flat.lengths, limit)[keep])


def _count(flat: Flat, eos: int, counts: SplitCounts) -> None:
    """``SplitCounts`` of the kept rows."""
    counts.examples += len(flat.lengths)
    counts.tokens += int(flat.lengths.sum())
    counts.trained_tokens += int(flat.mask.sum())
    counts.max_length = max(counts.max_length, int(flat.lengths.max(initial=0)))
    hits = flat.rows()[(flat.ids == eos) & (flat.mask != 0)]
    counts.eos_trained += int((np.bincount(hits, minlength=len(flat.lengths)) > 0).sum())


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
