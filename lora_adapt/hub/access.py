"""Who may write where: endpoint, repo id and token resolution, the write-access check, and the
translation of huggingface_hub failures into :class:`HubError` with a hint.

The token is only ever passed to huggingface_hub; it is never printed, logged or written, and any
message built from a server answer is scrubbed of it."""

from __future__ import annotations

import os
import re
from typing import Any

from ..errors import HubError, exception_chain

DEFAULT_ENDPOINT = "https://huggingface.co"
REPO_ID = re.compile(r"^(?P<namespace>[A-Za-z0-9][\w.-]{0,95})/(?P<name>[A-Za-z0-9][\w.-]{0,95})$")
TOKEN_HINT = (
    "set HF_TOKEN, or run `hf auth login` (a token with write access: https://huggingface.co/settings/tokens)"
)
WRITE_ROLES = ("write", "admin", "contributor")


def resolve_endpoint(endpoint: str | None = None) -> str:
    """The Hub to talk to: the argument, else ``HF_ENDPOINT`` (read now, not at import), else huggingface.co."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def parse_repo_id(repo_id: str) -> tuple[str, str]:
    """``"org/name"`` -> ``("org", "name")``; a bad id is a usage error (exit 2)."""
    match = REPO_ID.match(repo_id or "")
    if not match or "--" in repo_id or ".." in repo_id or repo_id.endswith(".git"):
        raise HubError(
            f"{repo_id!r} is not a Hub repository id",
            hint="use NAMESPACE/NAME (your user name or an organization, then the repo name), e.g. acme/clinical-lora",
            exit_code=2,
        )
    return match["namespace"], match["name"]


def resolve_token(explicit: str | None = None) -> str | None:
    """The token to use: the argument, else ``HF_TOKEN``, else the one stored by ``hf auth login``."""
    if explicit:
        return explicit.strip()
    from huggingface_hub import get_token

    return get_token()


def require_token(token: str | None) -> str:
    resolved = resolve_token(token)
    if not resolved:
        raise HubError(
            "no Hugging Face token found, so nothing can be published", hint=TOKEN_HINT, exit_code=2
        )
    return resolved


def check_write_access(
    repo_id: str, *, endpoint: str | None = None, token: str | None = None, network: Any = None
) -> str:
    """Check (one whoami call, with ``network``'s timeout and retries) that the token may write to
    ``repo_id``'s namespace; return the user name.

    Meant to run before anything heavy: at the start of ``run`` when the recipe publishes, and at the
    start of ``push``."""
    namespace, _ = parse_repo_id(repo_id)
    token = require_token(token)
    endpoint = resolve_endpoint(endpoint)
    from huggingface_hub import HfApi

    from .network import hub_call

    me = hub_call(
        lambda: HfApi(endpoint=endpoint, token=token).whoami(token=token),
        action="checking your token",
        endpoint=endpoint,
        network=network,
        repo_id=repo_id,
        token=token,
    )
    problem = _namespace_problem(me, namespace)
    if problem:
        raise HubError(f"cannot publish to {repo_id}: {problem}", hint=_namespace_hint(me), exit_code=2)
    return str(me.get("name"))


def _namespace_problem(me: dict[str, Any], namespace: str) -> str | None:
    """Why the whoami answer ``me`` does not allow writing under ``namespace`` (None when it does)."""
    access = (me.get("auth") or {}).get("accessToken") or {}
    role = access.get("role")
    if role == "read":
        return "the token is read-only"
    orgs = {org.get("name"): org.get("roleInOrg") for org in me.get("orgs") or []}
    if namespace != me.get("name") and namespace not in orgs:
        return f"the namespace {namespace!r} is neither your user ({me.get('name')}) nor one of your organizations"
    if namespace in orgs and orgs[namespace] not in WRITE_ROLES:
        return f"your role in organization {namespace!r} is {orgs[namespace]!r}, which cannot write"
    if role == "fineGrained" and not _fine_grained_can_write(access.get("fineGrained") or {}, namespace):
        return f"the fine-grained token has no write permission on {namespace!r}"
    return None


def _fine_grained_can_write(scopes: dict[str, Any], namespace: str) -> bool:
    for scope in scopes.get("scoped") or []:
        if (scope.get("entity") or {}).get("name") == namespace and "repo.write" in (
            scope.get("permissions") or []
        ):
            return True
    return False


def _namespace_hint(me: dict[str, Any]) -> str:
    names = [me.get("name")] + [org.get("name") for org in me.get("orgs") or []]
    return (
        f"push under one of: {', '.join(str(n) for n in names if n)} — or use a token with write access there"
    )


def translate_error(
    exc: BaseException, *, action: str, endpoint: str, repo_id: str | None = None, token: str | None = None
) -> HubError:
    """One clear :class:`HubError` for a failure raised by huggingface_hub (or the HTTP layer under it)."""
    from huggingface_hub import errors as hf_errors

    if isinstance(exc, HubError):
        return exc
    if _in_chain(exc, (hf_errors.OfflineModeIsEnabled,)) is not None:
        return HubError(
            f"{action} needs the Hub, but HF_HUB_OFFLINE is set", hint="unset HF_HUB_OFFLINE", exit_code=2
        )
    if _is_offline_cache_miss(exc):
        return HubError(
            f"{action}: not in the local cache, and HF_HUB_OFFLINE is set so the Hub is not asked",
            hint="unset HF_HUB_OFFLINE (or fetch it once while online)",
            exit_code=2,
        )
    network = _in_chain(exc, _network_errors())
    if network is not None or isinstance(exc, hf_errors.LocalEntryNotFoundError):
        detail = _scrub(str(network or exc) or type(network or exc).__name__, token)
        return HubError(
            f"network failure while {action} ({endpoint}): {_first_line(detail)}",
            hint="check your connection and the Hub endpoint (--endpoint or HF_ENDPOINT); nothing local was changed, "
            "so the same command can simply be run again",
        )
    if isinstance(exc, hf_errors.HfHubHTTPError):
        return _http_error(exc, action=action, repo_id=repo_id, token=token)
    return HubError(
        f"{action} failed: {type(exc).__name__}: {_first_line(_scrub(str(exc), token))}",
        hint="rerun with --debug for the full traceback",
    )


def _http_error(exc: Any, *, action: str, repo_id: str | None, token: str | None) -> HubError:
    from huggingface_hub import errors as hf_errors

    status = getattr(exc.response, "status_code", None)
    server = _scrub(getattr(exc, "server_message", None) or _first_line(str(exc)), token)
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return HubError(
            f"{action}: revision not found in {repo_id}",
            hint="check --revision (a branch, tag or commit)",
            exit_code=2,
        )
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return HubError(
            f"{action}: repository {repo_id} not found, or private and not visible with this token",
            hint=f"check the repo id; for a private repo, {TOKEN_HINT}",
            exit_code=2,
        )
    if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
        return HubError(f"{action}: file not found in {repo_id}: {server}", exit_code=2)
    if status == 401:
        return HubError(
            f"{action}: the Hugging Face token was rejected (401: invalid or expired)",
            hint=TOKEN_HINT,
            exit_code=2,
        )
    if status == 403:
        return HubError(
            f"{action}: permission denied for {repo_id} (403): {server}",
            hint="push to your own namespace or an organization where you have write access",
            exit_code=2,
        )
    return HubError(
        f"{action} failed: HTTP {status}: {server}",
        hint="the Hub may be having trouble; nothing local was changed, retry later",
    )


def _in_chain(exc: BaseException, types: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of ``types`` in the cause/context chain (huggingface_hub wraps upload failures)."""
    return next((current for current in exception_chain(exc) if isinstance(current, types)), None)


def _is_offline_cache_miss(exc: BaseException) -> bool:
    from huggingface_hub import constants
    from huggingface_hub import errors as hf_errors

    cache_misses = (hf_errors.LocalEntryNotFoundError, getattr(hf_errors, "RevisionResolutionError", ()))
    return constants.is_offline_mode() and isinstance(exc, cache_misses)


def _network_errors() -> tuple[type[BaseException], ...]:
    try:  # huggingface_hub 2.x speaks httpx2, 1.x httpx
        import httpx2 as httpx
    except ImportError:  # pragma: no cover
        import httpx  # type: ignore[no-redef]
    return (httpx.TransportError, ConnectionError, TimeoutError)


def _first_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0] if lines else text


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text
