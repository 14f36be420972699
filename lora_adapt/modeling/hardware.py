"""Device and dtype choices, made once from the recipe and the machine."""

from __future__ import annotations

import torch

from ..errors import ModelLoadError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def resolve_device(requested: str) -> str:
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            "model.device is 'cuda' but no CUDA GPU is visible", hint="set model.device: auto or cpu"
        )
    if requested == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(
            "model.device is 'mps' but MPS is not available", hint="set model.device: auto or cpu"
        )
    return requested


def bf16_supported(device: str) -> bool:
    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    return False


def resolve_dtype(requested: str, device: str) -> torch.dtype:
    """`auto`: bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU/MPS (safe and exact)."""
    if requested != "auto":
        return DTYPES[requested]
    if device == "cuda":
        return torch.bfloat16 if bf16_supported(device) else torch.float16
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]
