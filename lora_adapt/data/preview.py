"""A plain-ASCII rendering of prepared examples: trained text shown plainly, masked text wrapped
in ``[masked]...[/masked]``, with token counts, truncation and whether EOS is trained."""

from __future__ import annotations

from typing import Any

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
            lines += _head(example, tokenizer, prepared.labels, prepared.layout)
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
        lines.append(f"labels: {shown}")
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


def _head(example: dict[str, Any], tokenizer, labels, layout: str) -> list[str]:
    ids, target = example["input_ids"], example["labels"]
    if layout == "tagging":
        words = [
            f"{tokenizer.decode([t])}/{labels[y]}" for t, y in zip(ids, target, strict=True) if y != -100
        ]
        return [" ".join(words), f"[tokens: {len(ids)}, labelled sub-words: {len(words)}]"]
    if isinstance(target, list):
        names = [labels[i] for i, v in enumerate(target) if v] or ["(none)"]
    else:
        names = [labels[target]]
    return [
        tokenizer.decode(ids, skip_special_tokens=False),
        f"[tokens: {len(ids)} | label: {', '.join(names)}]",
    ]
