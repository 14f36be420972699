"""Refuse adapters that would silently do nothing: missing weights, missing modules, untrained B matrices.

A LoRA update is ``scale * B @ A`` and PEFT initialises ``B`` to zeros, so an adapter whose every
``lora_B`` is still all zeros changes nothing (learning rate 0, zero steps, a frozen optimizer).
DoRA starts from the same zero ``B`` (its magnitude vector starts at ``||W||``), so the same test
applies. PiSSA/OLoRA/CorDA start from a non-zero ``B`` by construction: for them an all-zero ``B``
is never expected and cannot be used to tell trained from untrained, so only the structural checks
and the non-finite check apply."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import artifacts as A
from ..errors import LoraAdaptError

LORA_A, LORA_B = ".lora_A.", ".lora_B."
EMBED_A, EMBED_B = ".lora_embedding_A", ".lora_embedding_B"
MAGNITUDE = ".lora_magnitude_vector"
# Inits whose B is non-zero at step 0 (see peft LoraConfig.init_lora_weights).
NONZERO_B_INITS = ("pissa", "olora", "corda", "loftq")


def check_adapter_weights(adapter_dir: Path) -> dict[str, Any]:
    """Read a PEFT LoRA adapter folder and refuse it when it is missing, incomplete or untrained.

    Returns JSON-able stats: tensor and pair counts, zero-B count, norms of the B matrices."""
    adapter_dir = Path(adapter_dir)
    config = _read_config(adapter_dir)
    tensors = _read_tensors(adapter_dir)
    if config.get("peft_type", "LORA") != "LORA":
        return {"peft_type": config.get("peft_type"), "n_tensors": len(tensors), "n_lora_pairs": 0}
    pairs = _lora_pairs(tensors, adapter_dir)
    _check_targets(config, pairs, adapter_dir)
    _check_finite(tensors, adapter_dir)
    stats = _stats(config, tensors, pairs)
    if stats["zero_b_pairs"] == len(pairs) and not stats["nonzero_b_init"]:
        raise LoraAdaptError(
            f"the adapter in {adapter_dir} is untrained: all {len(pairs)} lora_B matrices are exactly zero, "
            "so it changes nothing in the base model",
            hint="training did not update the adapter: check training.learning_rate > 0, that at least one "
            "optimizer step ran (rows, batch size, max_steps) and that the loss was not masked out entirely",
        )
    return stats


def adapter_config(adapter_dir: Path) -> dict[str, Any]:
    """The adapter's ``adapter_config.json`` as a dict (a LoraAdaptError when missing or invalid)."""
    return _read_config(Path(adapter_dir))


def tensor_names(adapter_dir: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(Path(adapter_dir) / A.ADAPTER_WEIGHTS), framework="pt") as f:
        return list(f.keys())


def lora_module_paths(adapter_dir: Path) -> list[str]:
    """Module paths (``model.layers.0.self_attn.q_proj``) that carry LoRA weights, read from the tensor names."""
    markers = (LORA_A, EMBED_A)
    return sorted(
        {_module_path(key.split(m)[0]) for key in tensor_names(adapter_dir) for m in markers if m in key}
    )


def _read_config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / A.ADAPTER_CONFIG
    if not path.is_file():
        raise LoraAdaptError(
            f"no {A.ADAPTER_CONFIG} in {adapter_dir}",
            hint="point at the adapter/ folder of a finished run (PEFT save_pretrained output)",
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise LoraAdaptError(f"{path} is not valid JSON: {exc}") from None


def _read_tensors(adapter_dir: Path) -> dict[str, Any]:
    from safetensors import SafetensorError, safe_open

    path = adapter_dir / A.ADAPTER_WEIGHTS
    if not path.is_file():
        legacy = (
            " (found adapter_model.bin: pickle weights are not read)"
            if (adapter_dir / "adapter_model.bin").exists()
            else ""
        )
        raise LoraAdaptError(
            f"no {A.ADAPTER_WEIGHTS} in {adapter_dir}{legacy}",
            hint="the adapter was not saved, or the save was interrupted; rerun training",
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise LoraAdaptError(
            f"cannot read {path}: {exc}", hint="the file is damaged; rerun training"
        ) from None


def _lora_pairs(tensors: dict[str, Any], adapter_dir: Path) -> dict[str, tuple[Any, Any]]:
    """``module path -> (A, B)``; a lone A or B is a missing tensor."""
    a_parts: dict[str, Any] = {}
    b_parts: dict[str, Any] = {}
    for key, tensor in tensors.items():
        for marker, bucket in ((LORA_A, a_parts), (EMBED_A, a_parts), (LORA_B, b_parts), (EMBED_B, b_parts)):
            if marker in key:
                bucket[_module_path(key.split(marker)[0])] = tensor
    lonely = sorted(set(a_parts) ^ set(b_parts))
    if lonely:
        raise LoraAdaptError(
            f"the adapter in {adapter_dir} has unpaired LoRA tensors (A without B or B without A) "
            f"for {_few(lonely)}",
            hint="the adapter file is incomplete; save it again from training",
        )
    if not a_parts:
        raise LoraAdaptError(
            f"the adapter in {adapter_dir} holds no LoRA tensors ({len(tensors)} other tensors)",
            hint="target_modules matched nothing, or the file is not a LoRA adapter",
        )
    return {name: (a_parts[name], b_parts[name]) for name in sorted(a_parts)}


def _module_path(key_prefix: str) -> str:
    """``base_model.model.model.layers.0.self_attn.q_proj`` -> ``model.layers.0.self_attn.q_proj``."""
    prefix = "base_model.model."
    return key_prefix[len(prefix) :] if key_prefix.startswith(prefix) else key_prefix


def _check_targets(config: dict[str, Any], pairs: dict[str, Any], adapter_dir: Path) -> None:
    """Every module named in the config's target_modules list has at least one saved pair."""
    targets = config.get("target_modules")
    if not isinstance(targets, list):  # a regex or "all-linear" left unresolved: nothing to enumerate
        return
    heads = set(
        config.get("modules_to_save") or []
    )  # a classifier head listed here is trained in full, not LoRA'd
    missing = [
        t
        for t in targets
        if t not in heads and not any(name == t or name.endswith("." + t) for name in pairs)
    ]
    if missing:
        raise LoraAdaptError(
            f"the adapter in {adapter_dir} is missing LoRA tensors for target module(s) {_few(missing)} "
            f"named in {A.ADAPTER_CONFIG}",
            hint="the weights file does not match its config; save the adapter again",
        )


def _check_finite(tensors: dict[str, Any], adapter_dir: Path) -> None:
    import torch

    bad = [key for key, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise LoraAdaptError(
            f"the adapter in {adapter_dir} has NaN/inf values in {_few(bad)}",
            hint="training diverged: lower training.learning_rate or use precision fp32/bf16",
        )


def _stats(
    config: dict[str, Any], tensors: dict[str, Any], pairs: dict[str, tuple[Any, Any]]
) -> dict[str, Any]:
    b_norms = [float(b.float().norm()) for _, b in pairs.values()]
    a_norms = [float(a.float().norm()) for a, _ in pairs.values()]
    zero_b = [name for name, (_, b) in pairs.items() if not bool(b.any())]
    init = config.get("init_lora_weights", True)
    return {
        "peft_type": "LORA",
        "n_tensors": len(tensors),
        "n_lora_pairs": len(pairs),
        "n_parameters": sum(int(t.numel()) for t in tensors.values()),
        "zero_b_pairs": len(zero_b),
        "zero_b_modules": zero_b[:20],
        "magnitude_vectors": sum(MAGNITUDE in key for key in tensors),
        "other_tensors": sorted(key for key in tensors if ".lora_" not in key)[:20],
        "b_norm": _summary(b_norms),
        "a_norm": _summary(a_norms),
        "use_dora": bool(config.get("use_dora")),
        "init_lora_weights": init,
        "nonzero_b_init": isinstance(init, str) and init.lower().startswith(NONZERO_B_INITS),
    }


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"min": 0.0, "max": 0.0, "mean": 0.0}
    mean = sum(values) / len(values)
    return {"min": min(values), "max": max(values), "mean": mean if math.isfinite(mean) else float("nan")}


def _few(names: Iterable[str], n: int = 5) -> str:
    names = list(names)
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more
