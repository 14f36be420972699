"""Publishing run directories to the Hugging Face Hub and pulling adapters back.

Nothing heavy is imported here: huggingface_hub is imported inside the functions that talk to the Hub.
The endpoint is always passed explicitly (``--endpoint`` / ``publish.endpoint``, else ``HF_ENDPOINT``
read at call time), because huggingface_hub fixes its default endpoint when it is imported."""

from __future__ import annotations

from .access import check_write_access, parse_repo_id, resolve_endpoint, resolve_token
from .card import render_model_card
from .network import HubNetwork
from .transfer import PullResult, PushResult, fetch_adapter, pull_adapter, push_run, resolve_adapter_path
from .validation import validate_model_card

__all__ = [
    "HubNetwork",
    "PullResult",
    "PushResult",
    "check_write_access",
    "fetch_adapter",
    "parse_repo_id",
    "pull_adapter",
    "push_run",
    "render_model_card",
    "resolve_adapter_path",
    "resolve_endpoint",
    "resolve_token",
    "validate_model_card",
]
