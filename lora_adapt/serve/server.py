"""Running the app under uvicorn: in the foreground (`lora-adapt serve`) or in a background thread
(tests and benchmarks talk to a real server on a loopback port)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..domains.adapter_set import AdapterSet
from ..errors import LoraAdaptError
from ..recipe.serving import ServeSpec
from .app import create_app

STARTUP_TIMEOUT_S = 60.0
KEEP_ALIVE_S = 5
"""Seconds an idle keep-alive connection is held open."""
CONNECTIONS_PER_REQUEST_SLOT = 2
"""Open connections allowed per request slot (``max_concurrent``): room for idle keep-alive clients."""


@dataclass(frozen=True)
class Served:
    """A server running in the background: its base URL and its shared state (adapters, batcher)."""

    url: str
    state: Any  # app.Server


def _server(aset: AdapterSet, settings: ServeSpec, router):
    import uvicorn

    config = uvicorn.Config(
        create_app(aset, settings, router),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_keep_alive=KEEP_ALIVE_S,
        # open connections (slow or idle clients included) beyond this get 503 from uvicorn itself; requests
        # in flight are limited more tightly (429) by limits.ConcurrencyLimit
        limit_concurrency=CONNECTIONS_PER_REQUEST_SLOT * settings.max_concurrent,
        lifespan="on",
    )
    return uvicorn.Server(config)


def bound_port(server) -> int:
    return int(server.servers[0].sockets[0].getsockname()[1])


def serve_forever(
    aset: AdapterSet, settings: ServeSpec, router=None, *, echo: Callable[[str], None] = print
) -> None:
    """Serve until interrupted (Ctrl-C)."""
    server = _server(aset, settings, router)

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            echo(
                f"serving {', '.join(aset.members) or 'no adapters'} on http://{settings.host}:{bound_port(server)}/v1"
            )

    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn shuts down gracefully on Ctrl-C, then re-raises the signal
        pass
    echo("server stopped")


@contextmanager
def running(aset: AdapterSet, settings: ServeSpec | None = None, router=None) -> Iterator[Served]:
    """A real server on a background thread (tests, benchmarks); yields its URL and state."""
    settings = settings or ServeSpec(port=0)
    server = _server(aset, settings, router)
    thread = threading.Thread(target=server.run, name="lora-adapt-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise LoraAdaptError(f"the server did not start on {settings.host}:{settings.port}")
        time.sleep(0.02)
    try:
        yield Served(f"http://{settings.host}:{bound_port(server)}", server.config.app.state.server)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
