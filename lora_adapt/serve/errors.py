"""Errors as the OpenAI API writes them, so official clients raise their usual exceptions:
``{"error": {"message", "type", "param", "code"}}`` with the matching HTTP status."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import LoraAdaptError

TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
    504: "timeout_error",
}


class APIError(Exception):
    """An error answered to the client (never a crash of the server)."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


def error_body(
    status: int, message: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": TYPES.get(status, "invalid_request_error"),
            "param": param,
            "code": code,
        }
    }


def error_response(
    status: int, message: str, code: str | None = None, param: str | None = None
) -> JSONResponse:
    return JSONResponse(error_body(status, message, code, param), status_code=status)


def from_lora_adapt(exc: LoraAdaptError, *, status: int = 400) -> APIError:
    """A user-facing lora-adapt error (bad input, unknown adapter, unfit adapter) as an API error."""
    from ..domains.adapter_set import UnknownAdapterError

    if isinstance(exc, UnknownAdapterError):
        return APIError(404, exc.message, code="model_not_found", param="model")
    text = exc.message + (f" ({exc.hint})" if exc.hint else "")
    return APIError(status, text, code="invalid_value")


def install_handlers(app) -> None:
    """Every failure becomes an OpenAI-style JSON error: validation 400, unknown route 404, crash 500."""

    @app.exception_handler(APIError)
    async def _api(request: Request, exc: APIError):
        return error_response(exc.status, exc.message, exc.code, exc.param)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            return error_response(400, "the request body is not valid JSON", "invalid_json")
        unknown = [_where(e) for e in errors if e.get("type") == "extra_forbidden"]
        if unknown:
            return error_response(400, unknown_fields_message(unknown), "unknown_parameter", unknown[0])
        where = _where(first) or None
        message = f"{where}: {first.get('msg')}" if where else str(first.get("msg", "invalid request"))
        return error_response(400, message, "invalid_value", where)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        message = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, message)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}", "internal_error")


def _where(error: dict[str, Any]) -> str:
    """A validation error's place in the body (``messages.0.name``)."""
    return ".".join(str(x) for x in error.get("loc", ()) if x != "body")


def unknown_fields_message(names: list[str]) -> str:
    quoted = ", ".join(f"'{n}'" for n in names)
    return (
        f"unknown parameter{'s' if len(names) > 1 else ''}: {quoted}: lora-adapt does not honour "
        f"{'them' if len(names) > 1 else 'it'} and will not ignore a setting that would change the answer "
        "(remove it; the accepted fields are those of the OpenAI API that lora-adapt supports, see the README)"
    )
