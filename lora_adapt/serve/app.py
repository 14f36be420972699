"""The OpenAI-compatible server: FastAPI routes over one :class:`AdapterSet` and its micro-batcher.

Endpoints: ``GET /health``; ``GET /v1/models``; ``POST /v1/completions`` and ``/v1/chat/completions``
(``stream: true`` answers with server-sent events) for generative adapters and the base; ``POST
/v1/classify`` for task adapters (classifier heads and generative task adapters); admin ``GET/POST
/v1/adapters``, ``DELETE /v1/adapters/{name}`` (and vLLM's ``/v1/load_lora_adapter``,
``/v1/unload_lora_adapter``). ``model`` names an adapter, ``base``, or ``auto`` (the router picks).
Like vLLM and LoRAX, an adapter is addressed through the ``model`` field; unlike them, a head adapter
answers labels, and every answer says which adapter gave it.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..domains.adapter_set import BASE, AdapterExistsError, AdapterSet
from ..domains.tasks import DEFAULT_TOP_K
from ..errors import LoraAdaptError
from ..recipe.serving import GenerationSpec, ServeSpec
from . import responses as R
from .batcher import Job, MicroBatcher
from .errors import APIError, error_body, from_lora_adapt, install_handlers, unknown_fields_message
from .limits import BodyLimit, ConcurrencyLimit
from .schemas import ChatRequest, ClassifyRequest, CompletionRequest, LoadRequest

AUTO = "auto"


class Server:
    """What the routes share: the adapters, the batcher, the router and the limits."""

    def __init__(self, aset: AdapterSet, settings: ServeSpec, router=None):
        self.aset, self.settings, self.router = aset, settings, router
        self.batcher = MicroBatcher(
            aset,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_wait_ms / 1000,
            router=router,
        )
        self.created = int(time.time())
        self.base_id = str(aset.spec.name_or_path)

    def target(self, model: str, endpoint: str) -> str | None:
        """The adapter a request names (None = route); 404 unknown, 400 the wrong endpoint for its kind."""
        if model == AUTO:
            return None
        member = self.aset.members.get(model)
        if member is None:
            known = ", ".join([*self.aset.members, *([AUTO] if self.router else [])]) or "none"
            raise APIError(
                404,
                f"the model `{model}` does not exist (served: {known})",
                code="model_not_found",
                param="model",
            )
        generative = member.kind.name == "generation"
        if generative != (endpoint == "generation"):
            where = "/v1/chat/completions or /v1/completions" if generative else "/v1/classify"
            raise APIError(
                400, f"`{model}` is a {member.kind.name} adapter: send its inputs to {where}", param="model"
            )
        return model

    def generation(self, body, budget: int | None) -> GenerationSpec:
        limit = self.settings.max_tokens
        if budget is not None and budget > limit:
            raise APIError(
                400, f"max_tokens is {budget}; this server generates at most {limit}", param="max_tokens"
            )
        values: dict[str, Any] = {"max_new_tokens": budget or min(GenerationSpec().max_new_tokens, limit)}
        for key in ("temperature", "top_p", "seed", "repetition_penalty"):
            if getattr(body, key) is not None:
                values[key] = getattr(body, key)
        if body.top_k is not None:
            values["top_k"] = max(body.top_k, 0)  # vLLM's -1 (all tokens) is GenerationSpec's 0
        if body.logprobs not in (None, False):
            raise APIError(400, "logprobs are not supported", param="logprobs")
        return GenerationSpec(**values)

    async def run(self, job: Job) -> list[dict[str, Any]]:
        try:
            return await asyncio.wait_for(self.batcher.submit(job), self.settings.timeout_s)
        except asyncio.TimeoutError:
            job.cancelled = True
            raise APIError(504, f"no answer within {self.settings.timeout_s:g} s", code="timeout") from None

    def job(self, items, generation, **kw: Any) -> Job:
        if len(items) > self.settings.max_inputs:
            raise APIError(
                400, f"{len(items)} inputs; at most {self.settings.max_inputs} per request", param="input"
            )
        return Job(items, generation, max_prompt_tokens=self.settings.max_prompt_tokens, **kw)


def create_app(aset: AdapterSet, settings: ServeSpec | None = None, router=None) -> FastAPI:
    server = Server(aset, settings or ServeSpec(), router)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await server.batcher.start()
        yield
        await server.batcher.stop()

    app = FastAPI(title="lora-adapt", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.server = server
    install_handlers(app)
    app.add_middleware(ConcurrencyLimit, limit=server.settings.max_concurrent)
    app.add_middleware(BodyLimit, limit=server.settings.max_body_bytes)
    auth = Depends(_auth(server.settings.api_key))
    _health_routes(app, server)
    _openai_routes(app, server, auth)
    if server.settings.allow_admin:
        _admin_routes(app, server, auth)
    return app


def _auth(key: str | None):
    async def check(request: Request) -> None:
        if key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), key.encode()):
            raise APIError(
                401, "missing or wrong API key (send Authorization: Bearer KEY)", code="invalid_api_key"
            )

    return check


def _health_routes(app: FastAPI, server: Server) -> None:
    @app.get("/health")
    async def health() -> dict[str, Any]:
        sizes = server.batcher.batch_sizes
        return {
            "status": "ok",
            "base": server.base_id,
            "adapters": server.aset.adapter_names,
            "router": server.router is not None,
            "queued": server.batcher.queued,
            "batches": len(sizes),
            "largest_batch": max(sizes, default=0),
        }


def _openai_routes(app: FastAPI, server: Server, auth) -> None:
    @app.get("/v1/models", dependencies=[auth])
    async def models() -> dict[str, Any]:
        data = [R.model_card(m, server.base_id, server.created) for m in list(server.aset.members.values())]
        if server.router is not None:
            data.append(
                {
                    "id": AUTO,
                    "object": "model",
                    "created": server.created,
                    "owned_by": "lora-adapt",
                    "root": server.router.source,
                    "parent": server.base_id,
                    "kind": "router",
                }
            )
        return {"object": "list", "data": data}

    @app.post("/v1/completions", dependencies=[auth])
    async def completions(body: CompletionRequest):
        name = server.target(body.model, "generation")
        if body.echo:
            raise APIError(400, "echo is not supported", param="echo")
        generation = server.generation(body, body.max_tokens)
        job = server.job([(name, {"text": p}) for p in body.prompts()], generation, stops=body.stops())
        if body.stream:
            return await _stream(server, job, "text", body.model)
        return R.completion(await server.run(job), body.model, R.new_id("cmpl"))

    @app.post("/v1/chat/completions", dependencies=[auth])
    async def chat(body: ChatRequest):
        name = server.target(body.model, "generation")
        generation = server.generation(body, body.budget())
        job = server.job([(name, {"messages": body.chat()})], generation, stops=body.stops())
        if body.stream:
            return await _stream(server, job, "chat", body.model)
        return R.chat((await server.run(job))[0], body.model, R.new_id("chatcmpl"))

    @app.post("/v1/classify", dependencies=[auth])
    async def classify(body: ClassifyRequest):
        name = server.target(body.model, "task")
        member = server.aset.members.get(name) if name is not None else None
        if body.top_labels is not None and member is not None and not member.kind.ranks_labels:
            raise APIError(  # it would be ignored: say so, as `predict --top-labels` does
                400,
                f"top_labels: `{name}` is a {member.kind.name} adapter and gives no label probabilities",
                param="top_labels",
            )
        top_k = DEFAULT_TOP_K if body.top_labels is None else body.top_labels
        job = server.job([(name, x) for x in body.inputs()], None, top_k=top_k)
        return R.classify(await server.run(job), body.model)


def _admin_routes(app: FastAPI, server: Server, auth) -> None:
    async def load(name: str, source: str) -> dict[str, Any]:
        try:
            member = await server.batcher.call(server.aset.add, name, source)
        except AdapterExistsError as exc:
            raise from_lora_adapt(exc, status=409) from None
        except LoraAdaptError as exc:
            raise from_lora_adapt(exc) from None
        return member.describe()

    async def unload(name: str) -> dict[str, Any]:
        if name == BASE:
            raise APIError(400, "the base model cannot be unloaded", param="name")
        try:
            await server.batcher.call(server.aset.remove, name)
        except LoraAdaptError as exc:
            raise from_lora_adapt(exc) from None
        return {"id": name, "object": "model", "deleted": True}

    @app.get("/v1/adapters", dependencies=[auth])
    async def adapters() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [m.describe() for m in list(server.aset.members.values())],
            "memory": server.aset.memory_report(),
        }

    @app.post("/v1/adapters", dependencies=[auth], status_code=201)
    async def add(body: LoadRequest) -> dict[str, Any]:
        return await load(body.name, body.source)

    @app.delete("/v1/adapters/{name}", dependencies=[auth])
    async def remove(name: str) -> dict[str, Any]:
        return await unload(name)

    @app.post("/v1/load_lora_adapter", dependencies=[auth])
    async def vllm_load(request: Request) -> dict[str, Any]:  # vLLM's names for the same thing
        body = await _json(request, "lora_name", "lora_path")
        return await load(str(body.get("lora_name", "")), str(body.get("lora_path", "")))

    @app.post("/v1/unload_lora_adapter", dependencies=[auth])
    async def vllm_unload(request: Request) -> dict[str, Any]:
        return await unload(str((await _json(request, "lora_name")).get("lora_name", "")))


async def _json(request: Request, *fields: str) -> dict[str, Any]:
    """The JSON object of the body, holding no field but ``fields`` (others are refused, not ignored)."""
    try:
        body = await request.json()
    except ValueError:
        raise APIError(400, "the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    unknown = [str(k) for k in body if k not in fields]
    if unknown:
        raise APIError(400, unknown_fields_message(unknown), code="unknown_parameter", param=unknown[0])
    return body


async def _stream(server: Server, job: Job, kind: str, requested: str):
    """Start the job; answer errors found before the first token with their status, then stream SSE."""
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    job.sink = lambda index, text: queue.put_nowait((index, text))
    task = asyncio.ensure_future(server.run(job))
    first = asyncio.ensure_future(queue.get())
    await asyncio.wait({first, task}, return_when=asyncio.FIRST_COMPLETED)
    if task.done() and task.exception() is not None and not first.done():
        first.cancel()
        raise task.exception()  # type: ignore[misc]
    return StreamingResponse(_events(task, first, queue, kind, requested), media_type="text/event-stream")


async def _events(task, first, queue, kind: str, requested: str) -> AsyncIterator[str]:
    response_id = R.new_id("chatcmpl" if kind == "chat" else "cmpl")
    sent: dict[int, str] = {}
    getter = first
    try:
        if kind == "chat":
            yield R.stream_chunk(kind, response_id, requested, 0, "", None, first=True)
        while True:
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                index, text = getter.result()
                sent[index] = sent.get(index, "") + text
                yield R.stream_chunk(kind, response_id, requested, index, text, None)
                getter = asyncio.ensure_future(queue.get())
            elif queue.empty():
                break
        results = task.result()
        for i, result in enumerate(results):
            done = sent.get(i, "")
            rest = result["text"][len(done) :] if result["text"].startswith(done) else ""
            extra = {
                "adapter": result["adapter"],
                **({"routing": result["routing"]} if "routing" in result else {}),
            }
            model = R.answered_by([result], requested)
            yield R.stream_chunk(kind, response_id, model, i, rest, result["finish_reason"], **extra)
        yield R.sse("[DONE]")
    except APIError as exc:
        yield R.sse(error_body(exc.status, exc.message, exc.code, exc.param))
        yield R.sse("[DONE]")
    finally:
        getter.cancel()
        if not task.done():
            task.cancel()


__all__ = ["AUTO", "JSONResponse", "Server", "create_app"]
