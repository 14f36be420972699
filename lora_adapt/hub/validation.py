"""Local checks of a model card before it is uploaded: no network, every problem reported at once.

The Hub validates front matter too (``/api/validate-yaml``), but only once an upload has started;
checking here first means a bad card never costs a transfer, and catches what the Hub would accept
silently (a local path as ``base_model``, a token pasted into the card)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from ..errors import HubError
from .card import is_hub_id

TOKEN_LIKE = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")
RELATIONS = ("adapter", "merge", "quantized", "finetune")


def validate_model_card(text: str) -> dict[str, Any]:
    """Check a card locally (no network): front matter parses, required fields, Hub ids, model-index.

    Returns the parsed metadata; raises :class:`HubError` (exit 2) listing every problem found."""
    meta, problems = _front_matter(text)
    if meta is not None:
        problems += _metadata_problems(meta)
    if TOKEN_LIKE.search(text):
        problems.append("the card contains something that looks like a Hugging Face access token")
    if problems:
        raise HubError(
            "the model card is invalid:\n" + "\n".join(f"  - {p}" for p in problems),
            hint="fix the run's manifest.json / recipe (base_model.hub_id, output.license); nothing was uploaded",
            exit_code=2,
        )
    assert meta is not None
    return meta


def _front_matter(text: str) -> tuple[dict[str, Any] | None, list[str]]:
    match = re.match(r"^\s*---\r?\n([\s\S]*?)\r?\n---[ \t]*(\r?\n|$)", text)
    if not match:
        return None, ["no YAML front matter (the card must start with a --- block)"]
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        return None, [f"the front matter is not valid YAML: {exc}"]
    return (meta, []) if isinstance(meta, dict) else (None, ["the front matter is not a mapping"])


def _metadata_problems(meta: dict[str, Any]) -> list[str]:
    problems = []
    bases = meta.get("base_model")
    for base in bases if isinstance(bases, list) else ([] if bases is None else [bases]):
        if not is_hub_id(base):
            problems.append(
                f"base_model must be a Hub model id (namespace/name), not {base!r} (a local path?)"
            )
    if not meta.get("library_name"):
        problems.append("library_name is missing")
    relation = meta.get("base_model_relation")
    if relation is not None and (relation not in RELATIONS or not bases):
        problems.append(f"base_model_relation {relation!r} needs a base_model and one of {list(RELATIONS)}")
    for ref in _as_list(meta.get("datasets")):
        if not is_hub_id(ref):
            problems.append(f"datasets must list Hub dataset ids, not {ref!r}")
    if not isinstance(meta.get("tags", []), list):
        problems.append("tags must be a list")
    if "license" in meta and not (
        isinstance(meta["license"], str) and re.fullmatch(r"[a-z0-9.+-]+", meta["license"])
    ):
        problems.append(
            f"license must be a Hub license id such as apache-2.0 or mit, not {meta['license']!r}"
        )
    return problems + _model_index_problems(meta)


def _model_index_problems(meta: dict[str, Any]) -> list[str]:
    if "model-index" not in meta:
        return []
    from huggingface_hub.repocard_data import model_index_to_eval_results

    try:
        _, results = model_index_to_eval_results(meta["model-index"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return [f"model-index is malformed ({type(exc).__name__}: {exc})"]
    return [
        f"model-index metric {r.metric_type!r} has a non-numeric value {r.metric_value!r}"
        for r in results
        if not isinstance(r.metric_value, (int, float)) or isinstance(r.metric_value, bool)
    ]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else ([] if value is None else [value])
