"""The micro-batcher: requests that arrive together run as one batch, whatever adapters they name.

One model thread owns the model and its tokenizers (PEFT's active adapter and the Rust tokenizers are not
safe to share between threads); the event loop only queues work. The first queued job waits at most
``max_wait_s`` for others; up to ``max_batch_size`` rows are collected, grouped by what can share one
``generate`` call (classification and task rows; generation rows with the same sampling settings; a
seeded sampling request alone), and each group runs as one :meth:`AdapterSet.execute` with PEFT
``adapter_names`` (S-LoRA / Punica style heterogeneous batching on top of PEFT's mixed-batch forward).
Loading and unloading adapters run in the same thread, so no forward ever sees a half-loaded adapter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from ..domains.adapter_set import AdapterSet, Prepared
from ..errors import LoraAdaptError
from ..recipe.serving import GenerationSpec
from .errors import APIError, from_lora_adapt
from .streaming import GroupStreamer, RowStream


@dataclass
class Job:
    """One request: its inputs (adapter name or None = route, raw input), and how to answer them."""

    items: list[tuple[str | None, Any]]
    generation: GenerationSpec | None  # None: task predictions (classify)
    top_k: int = 5
    max_prompt_tokens: int = 0
    stops: tuple[str, ...] = ()
    sink: Callable[[int, str], None] | None = None  # streaming: (row, text delta)
    future: asyncio.Future | None = None
    cancelled: bool = False
    routes: list[dict[str, Any]] = field(default_factory=list)

    def key(self) -> tuple:
        if self.generation is None:
            return ("task", self.top_k)
        if self.generation.seed is not None and not self.generation.greedy:
            return ("alone", id(self))
        return (
            "generate",
            self.generation.model_copy(update={"max_new_tokens": 1, "stop": (), "seed": None}),
        )


class MicroBatcher:
    """Queue jobs from the event loop; run them in batches on the model thread."""

    def __init__(self, aset: AdapterSet, *, max_batch_size: int, max_wait_s: float, router=None):
        self.aset, self.router = aset, router
        self.max_batch_size, self.max_wait_s = max_batch_size, max_wait_s
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lora-adapt-model")
        self.batch_sizes: list[int] = []  # rows per executed group (for /health and the tests)
        self.waiting = 0  # jobs submitted and not yet run (queued, collected or in the running group)
        self._queue: asyncio.Queue[Job] | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def submit(self, job: Job) -> list[dict[str, Any]]:
        """Queue ``job`` and wait for its results (one per item, in order)."""
        assert self._queue is not None and self._loop is not None, "the batcher is not started"
        job.future = self._loop.create_future()
        self.waiting += 1
        await self._queue.put(job)
        try:
            return await job.future
        except asyncio.CancelledError:
            job.cancelled = True
            raise

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the model thread, between batches (adapter loading and unloading)."""
        assert self._loop is not None
        return await self._loop.run_in_executor(self.executor, fn, *args)

    async def _run_forever(self) -> None:
        assert self._queue is not None and self._loop is not None
        while True:
            jobs = [await self._queue.get()]
            deadline = self._loop.time() + self.max_wait_s
            while sum(len(j.items) for j in jobs) < self.max_batch_size:
                left = deadline - self._loop.time()
                if left <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self._queue.get(), left))
                except asyncio.TimeoutError:
                    break
            groups: dict[tuple, list[Job]] = {}
            for job in jobs:
                if not job.cancelled:
                    groups.setdefault(job.key(), []).append(job)
            self.waiting -= len(jobs) - sum(len(g) for g in groups.values())  # cancelled ones
            for group in groups.values():
                await self._loop.run_in_executor(self.executor, self._execute, group)
                self.waiting -= len(group)

    # --- on the model thread -----------------------------------------------------------------------

    def _execute(self, group: Sequence[Job]) -> None:
        ready: list[tuple[Job, list[Prepared]]] = []
        for job in group:
            try:
                ready.append((job, self._prepare(job)))
            except Exception as exc:  # a bad input fails its own request only
                self._fail(job, exc)
        if not ready:
            return
        batch = [p for _, prepared in ready for p in prepared]
        generation = ready[0][0].generation
        streamer = self._streamer(ready) if any(job.sink for job, _ in ready) else None
        try:
            results = self.aset.execute(batch, generation, top_k=ready[0][0].top_k, streamer=streamer)
        except Exception as exc:
            for job, _ in ready:
                self._fail(job, exc)
            return
        self.batch_sizes.append(len(batch))
        start = 0
        for job, prepared in ready:
            own = results[start : start + len(prepared)]
            start += len(prepared)
            for result, route in zip(own, job.routes or [{}] * len(own), strict=True):
                if route:
                    result["routing"] = route
            self._resolve(job, own)

    def _prepare(self, job: Job) -> list[Prepared]:
        names = self._names(job)
        budget = job.generation.max_new_tokens if job.generation is not None else None
        out = []
        for name, (_, raw) in zip(names, job.items, strict=True):
            prepared = replace(self.aset.prepare(name, raw, max_new_tokens=budget), stop=job.stops)
            if job.max_prompt_tokens and prepared.input_tokens > job.max_prompt_tokens:
                raise APIError(
                    400,
                    f"the input has {prepared.input_tokens} tokens; this server takes at most {job.max_prompt_tokens}",
                    code="context_length_exceeded",
                )
            out.append(prepared)
        return out

    def _names(self, job: Job) -> list[str]:
        """Each item's adapter: as named, or picked by the router (``model: auto``)."""
        to_route = [i for i, (name, _) in enumerate(job.items) if name is None]
        names = [name for name, _ in job.items]
        if not to_route:
            return names  # type: ignore[return-value]
        if self.router is None:
            raise APIError(
                400, "model 'auto' needs a router (start the server with --router RUN)", param="model"
            )
        kinds = "task" if job.generation is None else "generation"
        routes = self.router.route(self.aset, [job.items[i][1] for i in to_route], serves=kinds)
        job.routes = [{}] * len(job.items)
        for i, route in zip(to_route, routes, strict=True):
            names[i] = route["adapter"]
            job.routes[i] = route
        return names  # type: ignore[return-value]

    def _streamer(self, ready: Sequence[tuple[Job, list[Prepared]]]) -> GroupStreamer:
        from ..domains.runner import end_ids

        rows: list[RowStream | None] = []
        ends = end_ids(self.aset)
        for job, prepared in ready:
            for index, p in enumerate(prepared):
                if job.sink is None or p.head:
                    rows.append(None)
                    continue
                emit = self._threadsafe(job, index)
                rows.append(RowStream(self.aset[p.name].tokenizer, p.budget, ends, job.stops, emit))
        return GroupStreamer(rows)

    def _threadsafe(self, job: Job, index: int) -> Callable[[str], None]:
        assert self._loop is not None and job.sink is not None
        loop, sink = self._loop, job.sink

        def emit(text: str) -> None:
            loop.call_soon_threadsafe(sink, index, text)

        return emit

    def _resolve(self, job: Job, results: list[dict[str, Any]]) -> None:
        assert self._loop is not None and job.future is not None
        future = job.future

        def settle() -> None:
            if not future.done():
                future.set_result(results)

        self._loop.call_soon_threadsafe(settle)

    def _fail(self, job: Job, exc: Exception) -> None:
        assert self._loop is not None and job.future is not None
        error = exc
        if isinstance(exc, LoraAdaptError):
            error = from_lora_adapt(exc)
        elif not isinstance(exc, APIError):
            error = APIError(500, f"internal error: {type(exc).__name__}: {exc}", code="internal_error")
        future = job.future

        def settle() -> None:
            if not future.done():
                future.set_exception(error)

        self._loop.call_soon_threadsafe(settle)
