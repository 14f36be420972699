"""The base model an adapter was trained on: where to load it from, and refusing any other.

A LoRA update is only meaningful on the exact weights it was trained against. Before anything heavy
is loaded, a candidate base is compared with what training recorded (manifest.json's ``base_model``,
copied into the adapter folder's ``lora_adapt.json``): the architecture (model_type, architectures),
the config hash and the tokenizer hash. A mismatch is refused naming what differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from ..recipe.schema import ModelSpec


def recorded_base_spec(
    recorded: dict[str, Any],
    *,
    template: ModelSpec | None = None,
    base: str | Path | None = None,
    **changes: Any,
) -> ModelSpec:
    """A ModelSpec for the recorded base (or the ``base`` override), keeping ``template``'s other settings.

    The recorded local folder is used when it still exists, else the Hub id at its recorded revision."""
    if base is not None:
        text = str(base)
        local = Path(text).expanduser()
        ref, revision = (str(local.resolve()), None) if local.exists() else (text, None)
    elif recorded.get("resolved_path") and Path(recorded["resolved_path"]).is_dir():
        ref, revision = recorded["resolved_path"], None
    elif _still_local(recorded.get("name_or_path")):  # a package: model, or a folder that moved back
        ref, revision = recorded["name_or_path"], None
    elif recorded.get("hub_id"):
        ref, revision = recorded["hub_id"], recorded.get("revision")
    else:
        raise ModelLoadError(
            "the base model recorded for this adapter "
            f"({recorded.get('resolved_path') or recorded.get('name_or_path') or 'unknown'}) is no longer there",
            hint="pass the base explicitly (--base PATH) pointing at the model the adapter was trained on",
        )
    update = {"name_or_path": ref, "revision": revision, **changes}
    if template is not None:
        return template.model_copy(update=update)
    return ModelSpec(trust_remote_code=bool(recorded.get("trust_remote_code")), **update)


def _still_local(ref: Any) -> bool:
    from .source import PACKAGE_PREFIX

    return isinstance(ref, str) and (ref.startswith(PACKAGE_PREFIX) or Path(ref).expanduser().is_dir())


def read_base_config(spec: ModelSpec) -> dict[str, Any]:
    from transformers import AutoConfig

    from .source import resolve_model_source

    source = resolve_model_source(spec)
    try:
        config = AutoConfig.from_pretrained(
            source.load_path, revision=source.revision, trust_remote_code=spec.trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot read the config of {spec.name_or_path}: {str(exc).splitlines()[0]}",
            hint="pass a base model folder with config.json (or a reachable Hub id)",
        ) from None
    return config.to_dict()


def compare_base(
    recorded: dict[str, Any], config: dict[str, Any], spec: ModelSpec, pad_token_id: int | None
) -> dict[str, str]:
    """``{what: "ok" | "not recorded" | "not checked (...)" | "differs (...)"}`` for the candidate base.

    ``pad_token_id`` is the tokenizer's pad id: training fills a missing ``config.pad_token_id`` from it
    before hashing the config, so both forms of the config are accepted."""
    from ..manifest import config_sha256, tokenizer_sha256, weights_fingerprint

    checked = {"model_type": _same(recorded.get("model_type"), config.get("model_type"))}
    if recorded.get("architectures") and config.get("architectures"):
        checked["architectures"] = _same(recorded["architectures"], config["architectures"])
    hashes = {config_sha256(config), config_sha256({**config, "pad_token_id": pad_token_id})}
    want = recorded.get("config_sha256")
    checked["config_sha256"] = (
        "not recorded"
        if not want
        else ("ok" if want in hashes else f"differs (recorded {want[:12]}, found {min(hashes)[:12]})")
    )
    folder = local_files(spec)
    checked["tokenizer_sha256"] = _same_hash(
        recorded.get("tokenizer_sha256"), tokenizer_sha256(folder) if folder else None
    )
    checked["weights_fingerprint"] = _same_hash(
        recorded.get("weights_fingerprint"), weights_fingerprint(folder) if folder else None
    )
    return checked


def local_files(spec: ModelSpec) -> Path | None:
    """The folder holding the model's files: a local folder, or a Hub model's snapshot in the local cache
    (never downloads). None when neither is available."""
    from .source import resolve_model_source

    source = resolve_model_source(spec)
    folder = Path(source.load_path)
    if source.is_local:
        return folder if folder.is_dir() else None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source.load_path, revision=source.revision, local_files_only=True))
    except Exception:  # not cached (yet): nothing to compare locally
        return None


def _same_hash(want: str | None, found: str | None) -> str:
    if not want:
        return "not recorded"
    if not found:
        return "not checked (the base's files are not on this machine yet)"
    return "ok" if want == found else f"differs (recorded {want[:12]}, found {found[:12]})"


def check_base(
    recorded: dict[str, Any],
    spec: ModelSpec,
    pad_token_id: int | None,
    *,
    config: dict[str, Any] | None = None,
    what: str = "this adapter",
) -> dict[str, str]:
    """Refuse (exit 2) a base that differs from ``recorded``; return what was compared and how."""
    config = read_base_config(spec) if config is None else config
    checked = compare_base(recorded, config, spec, pad_token_id)
    bad = {k: v for k, v in checked.items() if v.startswith("differs")}
    if bad:
        detail = "; ".join(f"{k} {v}" for k, v in bad.items())
        revision = f" @ {recorded['revision']}" if recorded.get("revision") else ""
        raise ModelLoadError(
            f"{spec.name_or_path} is not the base {what} was trained on: {detail}",
            hint=f"use the model it was trained on ({recorded.get('name_or_path')}{revision}), e.g. --base PATH",
        )
    return checked


def _same(recorded: Any, found: Any) -> str:
    if recorded is None:
        return "not recorded"
    return "ok" if recorded == found else f"differs (recorded {recorded}, found {found})"
