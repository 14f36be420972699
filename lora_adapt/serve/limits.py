"""ASGI middleware for the server's limits: request body size (413) and requests in flight (429)."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException

from .errors import error_body


async def _send_error(send, status: int, message: str, code: str) -> None:
    import json

    body = json.dumps(error_body(status, message, code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse bodies over ``limit`` bytes with 413: by Content-Length before reading, else while reading."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        message = f"the request body is larger than this server accepts ({self.limit} bytes)"
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _send_error(send, 413, message, "request_too_large")
            return
        received = 0

        async def limited() -> dict[str, Any]:
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.limit:  # FastAPI passes an HTTPException raised here through as it is
                    raise HTTPException(413, message)
            return event

        await self.app(scope, limited, send)


class ConcurrencyLimit:
    """At most ``limit`` /v1 requests in flight; the next ones get 429 at once (clients retry)."""

    def __init__(self, app, limit: int):
        self.app, self.limit, self.active = app, limit, 0

    async def __call__(self, scope: dict[str, Any], receive, send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            await _send_error(
                send, 429, f"more than {self.limit} requests in flight; retry shortly", "too_many_requests"
            )
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
