"""A plain-ASCII rendering of prepared examples: trained text shown plainly, masked text wrapped
in ``[masked]...[/masked]``, with token counts, truncation and whether EOS is trained."""

from __future__ import annotations

from typing import Any

from .targets import unscale

MASK_OPEN, MASK_CLOSE = "[masked]", "[/masked]"


def render_preview(prepared, tokenizer, n: int = 3, split: str = "train") -> str:
    """A summary of the data stats followed by ``n`` rendered examples of ``split``."""
    lines = _summary(prepared.stats, prepared.layout, prepared.labels)
    dataset = getattr(prepared, split, None)
    if dataset is None or len(dataset) == 0:
        return "\n".join([*lines, f"(no {split} examples)"])
    for i in range(min(n, len(dataset))):
        example = dataset[i]
        lines += ["", f"--- {split} example {i} " + "-" * 40]
        if "completion_mask" in example:
            lines += _generative(example, tokenizer, prepared.stats.get("max_seq_length"))
        else:
            scaling = (prepared.stats.get("targets") or {}).get("scaling")
            raw = (prepared.raw.get(split) or [None] * (i + 1))[i]  # head rows align with the raw rows
            lines += _head(example, tokenizer, prepared.labels, prepared.layout, scaling, raw)
    return "\n".join(lines)


def _summary(stats: dict[str, Any], layout: str, labels) -> list[str]:
    lines = [
        f"layout: {layout} (format: {stats.get('format')}, mode: {stats.get('mode')})",
        f"rows read: {_per_split(stats.get('rows_read', {}))}",
        f"rows kept: {_per_split(stats.get('rows', {}))}",
    ]
    normalized = stats.get("normalized", {})
    lines.append(
        f"normalised: unicode {normalized.get('unicode', 0)}, whitespace {normalized.get('whitespace', 0)} row(s)"
    )
    for rule, counts in stats.get("dropped", {}).items():
        if any(counts.values()):
            lines.append(f"dropped ({rule}): {_per_split(counts)}")
    if any(stats.get("truncated", {}).values()):
        lines.append(f"truncated to {stats.get('max_seq_length')} tokens: {_per_split(stats['truncated'])}")
    if stats.get("eos_trained"):
        lines.append(f"EOS trained (share of examples): {_per_split(stats['eos_trained'])}")
    if labels:
        shown = ", ".join(labels[:12]) + (f", ... ({len(labels)} in all)" if len(labels) > 12 else "")
        lines.append(f"{'targets' if layout == 'regression' else 'labels'}: {shown}")
    lines += [f"warning: {w}" for w in stats.get("warnings", [])]
    return lines


def _per_split(counts: dict[str, Any]) -> str:
    return ", ".join(f"{name} {value}" for name, value in counts.items()) or "-"


def _generative(example: dict[str, Any], tokenizer, limit: int | None) -> list[str]:
    ids, mask = example["input_ids"], example["completion_mask"]
    pieces, start = [], 0
    for end in range(1, len(ids) + 1):
        if end == len(ids) or mask[end] != mask[start]:
            text = tokenizer.decode(ids[start:end], skip_special_tokens=False)
            pieces.append(text if mask[start] else f"{MASK_OPEN}{text}{MASK_CLOSE}")
            start = end
    eos = tokenizer.eos_token_id
    eos_trained = any(t == eos and m for t, m in zip(ids, mask, strict=True))
    truncated = limit is not None and len(ids) >= limit and ids[-1] != eos
    trained = sum(mask)
    return [
        "".join(pieces),
        f"[tokens: {len(ids)}, trained {trained}, masked {len(ids) - trained} | "
        f"truncated: {'yes' if truncated else 'no'} | EOS trained: {'yes' if eos_trained else 'no'}]",
    ]


def _head(example: dict[str, Any], tokenizer, labels, layout: str, scaling=None, raw=None) -> list[str]:
    ids, target = example["input_ids"], example["labels"]
    if layout == "tagging":
        pairs = tagged_words(ids, target, tokenizer, raw)
        words = [f"{text}/{labels[tag]}" for text, tag in pairs]
        return [" ".join(words), f"[tokens: {len(ids)}, words: {len(words)}]"]
    if layout == "regression":
        return [
            tokenizer.decode(ids, skip_special_tokens=False),
            _targets_line(len(ids), target, labels, scaling),
        ]
    if isinstance(target, list):
        names = [labels[i] for i, v in enumerate(target) if v] or ["(none)"]
    else:
        names = [labels[target]]
    return [
        tokenizer.decode(ids, skip_special_tokens=False),
        f"[tokens: {len(ids)} | label: {', '.join(names)}]",
    ]


def tagged_words(ids: list[int], target: list[int], tokenizer, raw=None) -> list[tuple[str, int]]:
    """(whole word, tag id) pairs: each word's first sub-word carries its tag. The words are the raw row's
    tokens when given (exactly as in the data; words cut by truncation are left out), else decoded from
    the sub-words (a labelled position starts a word, the unlabelled non-special ones after it continue it)."""
    tags = [tag for tag in target if tag != -100]
    if raw is not None and "tokens" in raw:
        return list(zip(raw["tokens"][: len(tags)], tags, strict=True))
    special = set(tokenizer.all_special_ids)
    words: list[tuple[list[int], int]] = []
    for token, tag in zip(ids, target, strict=True):
        if tag != -100:
            words.append(([token], tag))
        elif words and token not in special:
            words[-1][0].append(token)
    return [(tokenizer.decode(pieces).strip(), tag) for pieces, tag in words]


def _targets_line(tokens: int, target: list[float], names, scaling) -> str:
    """The row's targets in their own units (the head trains on the scaled values shown after them)."""
    values = list(target)
    if scaling and scaling.get("method") == "standardize":
        raw = unscale(values, scaling)
        shown = ", ".join(
            f"{n}={r:.2f} (trained as {v:+.3f})" for n, r, v in zip(names, raw, values, strict=True)
        )
    else:
        shown = ", ".join(f"{n}={v:.2f}" for n, v in zip(names, values, strict=True))
    return f"[tokens: {tokens} | targets: {shown}]"
