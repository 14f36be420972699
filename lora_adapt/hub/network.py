"""Every Hub call with a timeout, and retries with backoff where the call is safe to repeat.

huggingface_hub shares one HTTP client and gives it no timeout: an endpoint that accepts the connection
and never answers hangs the caller forever. :func:`apply_timeouts` sets connect / read / write / pool
timeouts on that shared client (its public ``get_session()``; called before each Hub operation, since the
client can be rebuilt). :func:`hub_call` runs one idempotent call (whoami, repo info, create with
``exist_ok``, downloads) with retries after timeouts, network failures and 429 / 5xx answers, then one
clear :class:`HubError`. Uploads are not repeated here (a commit is not idempotent; huggingface_hub
retries the file transfers itself).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import HubError, exception_chain
from .access import translate_error

T = TypeVar("T")
DEFAULT_TIMEOUT = 60.0  # recipe default: output.publish.timeout
DEFAULT_RETRIES = 3  # recipe default: output.publish.retries
CONNECT_TIMEOUT = 10.0  # a connection takes at most this long (or the whole timeout, if shorter)
MAX_BACKOFF = 8.0
RETRY_STATUS = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class HubNetwork:
    """How long to wait for the Hub and how often to retry (``output.publish`` / ``--timeout --retries``)."""

    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    backoff: float = 1.0  # seconds before the first retry, doubled each time (at most MAX_BACKOFF)


def apply_timeouts(network: HubNetwork | None = None) -> None:
    """Give huggingface_hub's shared HTTP client connect / read / write / pool timeouts.

    Its default timeout is not enough: several HfApi methods (``model_info``, ``repo_info``...) pass
    ``timeout=None`` explicitly, which means "wait forever". A request hook (the client's public
    ``event_hooks``) fills in every timeout left unset, keeping the ones a call sets itself."""
    import httpx2
    from huggingface_hub import get_session

    timeout = (network or HubNetwork()).timeout
    session = get_session()
    session.timeout = httpx2.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout))
    hooks = dict(session.event_hooks)
    others = [hook for hook in hooks.get("request", []) if not isinstance(hook, FillTimeouts)]
    session.event_hooks = {**hooks, "request": [*others, FillTimeouts(timeout)]}


class FillTimeouts:
    """An httpx request hook: every timeout (connect, read, write, pool) that a call left unset gets ours."""

    def __init__(self, timeout: float) -> None:
        self.values = {
            "connect": min(CONNECT_TIMEOUT, timeout),
            "read": timeout,
            "write": timeout,
            "pool": timeout,
        }

    def __call__(self, request) -> None:
        given = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {
            key: given.get(key) if given.get(key) is not None else value for key, value in self.values.items()
        }


def hub_call(
    fn: Callable[[], T],
    *,
    action: str,
    endpoint: str,
    network: HubNetwork | None = None,
    repo_id: str | None = None,
    token: str | None = None,
) -> T:
    """``fn()`` (an idempotent Hub call) with timeouts and retries; failures become one :class:`HubError`."""
    network = network or HubNetwork()
    apply_timeouts(network)
    for attempt in range(network.retries + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt < network.retries and retryable(exc):
                time.sleep(min(network.backoff * 2**attempt, MAX_BACKOFF))
                continue
            raise hub_error(
                exc,
                action=action,
                endpoint=endpoint,
                network=network,
                attempts=attempt + 1,
                repo_id=repo_id,
                token=token,
            ) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def hub_error(
    exc: BaseException,
    *,
    action: str,
    endpoint: str,
    network: HubNetwork,
    attempts: int = 1,
    repo_id: str | None = None,
    token: str | None = None,
) -> HubError:
    """:func:`translate_error`, saying plainly when the Hub did not answer in time."""
    if is_timeout(exc):
        tries = f" ({attempts} attempts)" if attempts > 1 else ""
        return HubError(
            f"the Hub at {endpoint} did not answer within {network.timeout:g} s while {action}{tries}",
            hint="check the endpoint (HF_ENDPOINT / --endpoint) and your connection, or allow more time "
            "(--timeout, output.publish.timeout); nothing local was changed",
        )
    return translate_error(exc, action=action, endpoint=endpoint, repo_id=repo_id, token=token)


def retryable(exc: BaseException) -> bool:
    import httpx2
    from huggingface_hub import errors as hf_errors

    if isinstance(exc, HubError):
        return False
    if _in_chain(exc, (httpx2.TransportError, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, hf_errors.HfHubHTTPError):
        return getattr(exc.response, "status_code", None) in RETRY_STATUS
    return False


def is_timeout(exc: BaseException) -> bool:
    import httpx2

    return _in_chain(exc, (httpx2.TimeoutException, TimeoutError))


def _in_chain(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    return any(isinstance(current, types) for current in exception_chain(exc))
