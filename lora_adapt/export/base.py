"""The base model an adapter was trained on: where to load it from, and refusing any other.

A LoRA update is only meaningful on the exact weights it was trained against. Before anything heavy
is loaded, a candidate base is compared with what the run's manifest recorded: the architecture
(model_type, architectures), the config hash and the tokenizer hash. A quantized checkpoint is
refused outright: merging into 4-bit weights re-quantizes the update and silently changes the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import LoraAdaptError, ModelLoadError
from ..recipe.schema import Device, ModelSpec
from .run import RunInfo


def base_spec(run: RunInfo, base: Path | None = None, *, device: Device = "auto") -> ModelSpec:
    """The ModelSpec that loads the run's base (or the ``base`` override) unquantized, in fp32."""
    recorded = run.manifest["base_model"]
    if base is not None:
        ref, revision = str(Path(base).expanduser().resolve()), None
    elif recorded.get("resolved_path") and Path(recorded["resolved_path"]).is_dir():
        ref, revision = recorded["resolved_path"], None
    elif recorded.get("hub_id"):
        ref, revision = recorded["hub_id"], recorded.get("revision")
    else:
        raise ModelLoadError(
            f"the base model recorded in the manifest ({recorded.get('resolved_path') or recorded.get('name_or_path')}) "
            "is no longer there",
            hint="pass --base PATH pointing at the same model the run was trained on",
        )
    if run.recipe is not None:
        return run.recipe.model.model_copy(
            update={"name_or_path": ref, "revision": revision, "dtype": "fp32", "device": device}
        )
    return ModelSpec(
        name_or_path=ref,
        revision=revision,
        dtype="fp32",
        device=device,
        trust_remote_code=bool(recorded.get("trust_remote_code")),
    )


def check_base(run: RunInfo, spec: ModelSpec, pad_token_id: int | None) -> dict[str, str]:
    """Refuse (exit 2) a quantized base or one that differs from the recorded base; say what was compared.

    ``pad_token_id`` is the tokenizer's pad id: the pipeline fills a missing ``config.pad_token_id``
    from it before hashing the config, so both forms of the config are accepted."""
    config = _config_dict(spec)
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "a quantization method")
        raise LoraAdaptError(
            f"{spec.name_or_path} is a quantized checkpoint ({method}); merging into quantized weights re-quantizes "
            "the LoRA update and changes the model",
            exit_code=2,
            hint="pass --base pointing at the original unquantized model (fp16/bf16/fp32 weights)",
        )
    checked = _compare(run.manifest["base_model"], config, spec, pad_token_id)
    bad = {k: v for k, v in checked.items() if v.startswith("differs")}
    if bad:
        recorded = run.manifest["base_model"]
        what = "; ".join(f"{k} {v}" for k, v in bad.items())
        raise LoraAdaptError(
            f"{spec.name_or_path} is not the base this adapter was trained on: {what}",
            exit_code=2,
            hint=f"pass --base pointing at the model the run used ({recorded.get('name_or_path')}"
            + (f" @ {recorded['revision']}" if recorded.get("revision") else "")
            + ")",
        )
    return checked


def _config_dict(spec: ModelSpec) -> dict[str, Any]:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(
            spec.name_or_path, revision=spec.revision, trust_remote_code=spec.trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot read the config of {spec.name_or_path}: {str(exc).splitlines()[0]}",
            hint="pass --base PATH pointing at a model folder with config.json",
        ) from None
    return config.to_dict()


def _compare(
    recorded: dict[str, Any], config: dict[str, Any], spec: ModelSpec, pad_token_id: int | None
) -> dict[str, str]:
    from ..manifest import config_sha256, tokenizer_sha256

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
    want_tok = recorded.get("tokenizer_sha256")
    found_tok = tokenizer_sha256(Path(spec.name_or_path)) if Path(spec.name_or_path).is_dir() else None
    if not want_tok or not found_tok:
        checked["tokenizer_sha256"] = (
            "not recorded" if not want_tok else "not checked (base is not a local folder)"
        )
    else:
        checked["tokenizer_sha256"] = (
            "ok" if want_tok == found_tok else f"differs (recorded {want_tok[:12]}, found {found_tok[:12]})"
        )
    return checked


def _same(recorded: Any, found: Any) -> str:
    if recorded is None:
        return "not recorded"
    return "ok" if recorded == found else f"differs (recorded {recorded}, found {found})"
