"""Response bodies in the OpenAI API's shapes (completions, chat completions, their stream chunks, models),
plus the fields lora-adapt adds: ``adapter`` (which adapter answered) and ``routing`` (for ``model: auto``)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def answered_by(results: list[dict[str, Any]], requested: str) -> str:
    """The response's ``model``: the adapter that answered (for ``auto``, when all rows went to one)."""
    names = {r["adapter"] for r in results}
    return names.pop() if len(names) == 1 else requested


def usage(results: list[dict[str, Any]]) -> dict[str, int]:
    prompt = sum(r.get("prompt_tokens", 0) for r in results)
    completion = sum(r.get("completion_tokens", 0) for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _extra(result: dict[str, Any]) -> dict[str, Any]:
    extra = {"adapter": result["adapter"]}
    if "routing" in result:
        extra["routing"] = result["routing"]
    return extra


def completion(results: list[dict[str, Any]], requested: str, response_id: str) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": answered_by(results, requested),
        "choices": [
            {
                "index": i,
                "text": r["text"],
                "logprobs": None,
                "finish_reason": r["finish_reason"],
                **_extra(r),
            }
            for i, r in enumerate(results)
        ],
        "usage": usage(results),
    }


def chat(result: dict[str, Any], requested: str, response_id: str) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answered_by([result], requested),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result["text"]},
                "logprobs": None,
                "finish_reason": result["finish_reason"],
                **_extra(result),
            }
        ],
        "usage": usage([result]),
    }


def stream_chunk(
    kind: str, response_id: str, model: str, index: int, text: str | None, finish: str | None, **extra: Any
) -> str:
    """One server-sent event of a streamed completion (``kind`` "text") or chat completion ("chat")."""
    if kind == "chat":
        delta: dict[str, Any] = {"content": text} if text is not None else {}
        if extra.pop("first", False):
            delta = {"role": "assistant", **delta}
        choice: dict[str, Any] = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        body = {"object": "chat.completion.chunk", "choices": [{**choice, **extra}]}
    else:
        choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
        body = {"object": "text_completion", "choices": [{**choice, **extra}]}
    return sse({"id": response_id, "created": int(time.time()), "model": model, **body})


def sse(obj: dict[str, Any] | str) -> str:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)}\n\n"


def classify(results: list[dict[str, Any]], requested: str) -> dict[str, Any]:
    data = []
    for i, r in enumerate(results):
        row = {k: v for k, v in r.items() if k not in ("prompt_tokens", "completion_tokens")}
        data.append({"index": i, **row})
    return {
        "object": "list",
        "model": answered_by(results, requested),
        "data": data,
        "usage": usage(results),
    }


def model_card(member, base_id: str, created: int) -> dict[str, Any]:
    description = member.describe()
    return {
        "id": member.name,
        "object": "model",
        "created": created,
        "owned_by": "lora-adapt",
        "root": description["source"] or base_id,
        "parent": None if description["source"] is None else "base",  # the base answers as model "base"
        "kind": description["kind"],
        "task": description["task"],
        "labels": description["labels"],
        "endpoint": "/v1/chat/completions" if description["kind"] == "generation" else "/v1/classify",
    }
