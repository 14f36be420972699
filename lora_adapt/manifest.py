"""manifest.json: what is needed to reproduce a run and to check an adapter against its base."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

TRACKED_PACKAGES = (
    "lora-adapt",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "bitsandbytes",
    "huggingface_hub",
    "safetensors",
    "tokenizers",
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.txt",
    "special_tokens_map.json",
)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def config_sha256(config: dict[str, Any]) -> str:
    """Hash of a model config without fields that change on save (versions, paths, dtype)."""
    volatile = {
        "_name_or_path",
        "transformers_version",
        "torch_dtype",
        "dtype",
        "quantization_config",
        "_commit_hash",
        "id2label",
        "label2id",
        "problem_type",
        "num_labels",
        "architectures",
        "use_cache",
        "pad_token_id",
    }  # pad is filled in at load time when the tokenizer pads with EOS
    stable = {k: v for k, v in sorted(config.items()) if k not in volatile}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()


def tokenizer_sha256(folder: Path) -> str | None:
    """Hash of the tokenizer's vocabulary files (what decides token ids)."""
    h = hashlib.sha256()
    found = False
    for name in ("tokenizer.json", "tokenizer.model", "vocab.txt"):
        path = Path(folder) / name
        if path.is_file():
            if name == "tokenizer.json":
                data = json.loads(path.read_text(encoding="utf-8"))
                h.update(
                    json.dumps(
                        {"model": data.get("model"), "added": data.get("added_tokens")}, sort_keys=True
                    ).encode()
                )
            else:
                h.update(path.read_bytes())
            found = True
    return h.hexdigest() if found else None


FINGERPRINT_SAMPLES = 16
FINGERPRINT_BYTES = 4096


def weights_fingerprint(folder: Path) -> str | None:
    """A cheap identity of a model's safetensors weights: each file's header (tensor names, dtypes, shapes,
    offsets) and 16 samples of 4 KiB spread over its data. Two checkpoints of one architecture with the
    same config (a base and its fine-tune) differ here, without reading gigabytes. None without safetensors."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    h = hashlib.sha256()
    for file in files:
        size = file.stat().st_size
        with file.open("rb") as f:
            head = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(head))
            header.pop("__metadata__", None)
            h.update(json.dumps(header, sort_keys=True).encode())
            data = size - 8 - head
            for k in range(FINGERPRINT_SAMPLES):
                f.seek(8 + head + (data * k) // FINGERPRINT_SAMPLES)
                h.update(f.read(FINGERPRINT_BYTES))
    return h.hexdigest()


def device_info(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"type": device, "platform": platform.platform(), "processor": platform.machine()}
    if device == "cuda":
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
    return info


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
