"""Adapters per domain: run one on new inputs (`predict`), hold many on one base (`AdapterSet`), compose
them (`compose`), score them across domains (`eval-matrix`) and route inputs to them (`route`).

Names are imported on first use (torch is only needed once a model is loaded)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .adapter_set import BASE, AdapterSet, Member, Prepared, UnknownAdapterError
    from .predict import predict_rows

_EXPORTS = {
    "BASE": "adapter_set",
    "AdapterSet": "adapter_set",
    "Member": "adapter_set",
    "Prepared": "adapter_set",
    "UnknownAdapterError": "adapter_set",
    "predict_rows": "predict",
}
__all__ = ["BASE", "AdapterSet", "Member", "Prepared", "UnknownAdapterError", "predict_rows"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
