"""Where a model's files come from: a Hub id, a local directory, or a package's data folder.

No torch import: used by `validate`, the planner and the pipeline alike."""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError
from ..recipe.schema import ModelSpec

PACKAGE_PREFIX = "package:"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
SAFE_WEIGHTS = ("*.safetensors",)
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt")


@dataclass(frozen=True)
class ModelSource:
    """What ``from_pretrained`` is given, and what the manifest records about it."""

    load_path: str  # local folder or Hub id passed to from_pretrained
    hub_id: str | None  # the Hub id, when the model comes from the Hub (None for local / package models)
    revision: str | None
    kind: str  # "hub" | "local" | "package"

    @property
    def is_local(self) -> bool:
        return self.kind != "hub"


def resolve_model_source(spec: ModelSpec) -> ModelSource:
    ref = spec.name_or_path
    if ref.startswith(PACKAGE_PREFIX):
        return ModelSource(str(_package_model_dir(ref[len(PACKAGE_PREFIX) :])), None, None, "package")
    path = Path(ref).expanduser()
    if path.exists() or ref.startswith(("/", "./", "../", "~")):
        folder = _check_local_dir(path)
        _check_weights(folder, spec.allow_pickle)
        return ModelSource(str(folder), _hub_id_recorded(folder), None, "local")
    if not HUB_ID.match(ref):
        raise ModelLoadError(
            f"model.name_or_path {ref!r} is neither an existing folder nor a Hub id (org/name)",
            hint="give a local folder with config.json, a Hub id such as Qwen/Qwen2.5-0.5B-Instruct, "
            "or package:<python_package> for weights shipped in a package",
        )
    return ModelSource(ref, ref, spec.revision, "hub")


def _package_model_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"model package {package!r} is not installed",
            hint=f"pip install {package.replace('_', '-')}  (or point model.name_or_path at a folder)",
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    configs = sorted(root.rglob("config.json"), key=lambda p: len(p.parts))
    for config in configs:
        if _has_files(config.parent, (*SAFE_WEIGHTS, *PICKLE_WEIGHTS)):
            return config.parent
    raise ModelLoadError(f"package {package!r} ships no model folder (config.json + weights) under {root}")


def _check_local_dir(path: Path) -> Path:
    if not path.exists():
        raise ModelLoadError(
            f"model folder {path} does not exist",
            hint="check model.name_or_path (relative paths resolve against the recipe file)",
        )
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{path} is not a model folder (no config.json)",
            hint="point model.name_or_path at the folder save_pretrained wrote",
        )
    return path.resolve()


def _check_weights(folder: Path, allow_pickle: bool) -> None:
    has_safe = _has_files(folder, SAFE_WEIGHTS)
    has_pickle = _has_files(folder, PICKLE_WEIGHTS)
    if not has_safe and has_pickle and not allow_pickle:
        raise ModelLoadError(
            f"{folder} has only pickle weights (.bin/.pt); lora-adapt loads safetensors only by default",
            hint="pickle files can run code when loaded: convert them to safetensors, or set model.allow_pickle: true if you trust them",
        )
    if not has_safe and not has_pickle:
        raise ModelLoadError(f"{folder} has a config.json but no weight files")


def _has_files(folder: Path, patterns: tuple[str, ...]) -> bool:
    return any(next(folder.glob(pattern), None) is not None for pattern in patterns)


def _hub_id_recorded(folder: Path) -> str | None:
    """A local copy of a Hub model often records where it came from (``_name_or_path``)."""
    try:
        name = json.loads((folder / "config.json").read_text()).get("_name_or_path") or ""
    except (OSError, ValueError):
        return None
    return name if HUB_ID.match(name) and "/" in name and not Path(name).exists() else None
