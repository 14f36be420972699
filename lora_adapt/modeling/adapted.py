"""Reload a base model with one or more trained adapters: the one way every consumer of a finished
adapter gets a model (rescoring, merge, predict, serve, the QLoRA-gap check).

    adapted = load_adapted(["runs/support", "hub:acme/legal-lora@v2"])
    adapted.model.set_adapter("legal-lora")

An adapter is a run directory, an adapter folder or a Hub reference (``hub:NAMESPACE/NAME[@REV]``).
Each is checked against the base before its weights are loaded (model type, config and tokenizer
hashes recorded at training time); the base is loaded as the adapter was trained - quantized or not,
with its classifier head, labels and pooling - unless the caller overrides the base or quantization.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError, UsageError
from ..recipe.schema import ModelSpec, QuantizationSpec
from ..rundir import AdapterInfo, read_adapter
from .identity import check_base, read_base_config, recorded_base_spec
from .loading import LoadedModel, load_model, load_tokenizer

AdapterRef = str | Path | AdapterInfo
HUB_PREFIX = "hub:"


@dataclass
class AdaptedModel:
    """A PeftModel holding the named adapters (the first one active), and how it was put together."""

    model: Any  # peft.PeftModel
    tokenizer: Any
    loaded: LoadedModel
    adapters: dict[str, AdapterInfo]
    base_check: dict[str, dict[str, str]] = field(default_factory=dict)  # adapter name -> what was compared

    @property
    def first(self) -> AdapterInfo:
        return next(iter(self.adapters.values()))


def resolve_adapter(ref: AdapterRef, *, name: str | None = None) -> AdapterInfo:
    """A local :class:`AdapterInfo` for a run directory, an adapter folder or a Hub reference."""
    if isinstance(ref, AdapterInfo):
        return ref
    text = str(ref)
    if not text.startswith(HUB_PREFIX) and Path(text).expanduser().exists():
        return read_adapter(text, name=name)
    from ..hub import resolve_adapter_path

    folder = resolve_adapter_path(text)
    repo = text.removeprefix(HUB_PREFIX).split("@", 1)[0]
    return read_adapter(folder, name=name or repo.split("/")[-1])


def load_adapted(
    adapters: AdapterRef | Sequence[AdapterRef],
    *,
    base: str | Path | None = None,
    model: ModelSpec | None = None,
    quantization: QuantizationSpec | None = None,
    tokenizer: Any = None,
    prepare_base: Callable[[Any], Any] | None = None,
    **model_changes: Any,
) -> AdaptedModel:
    """Load the recorded base once and attach every adapter (names must be unique).

    ``base``: another location of the same base (checked); ``model``: a ModelSpec whose settings (dtype,
    device, attention, trust_remote_code) replace the trained ones - its ``name_or_path`` is checked like
    ``base``; ``model_changes``: single ModelSpec fields to change (``dtype="fp32"``, ``device="cpu"``);
    ``quantization``: load the base this way instead of as trained (``QuantizationSpec()`` = unquantized);
    ``tokenizer``: one already loaded with :func:`adapter_tokenizer`; ``prepare_base``: called with the
    base model before the adapters are attached (merge unties embeddings there)."""
    from peft import PeftModel

    infos = _resolve_all(adapters)
    first = infos[0]
    _check_compatible(infos)
    spec = _base_spec(first, base, model, model_changes)
    tokenizer = tokenizer if tokenizer is not None else adapter_tokenizer(first, spec)
    config = read_base_config(spec)
    checks = {
        i.name: check_base(
            i.base_model, spec, tokenizer.pad_token_id, config=config, what=f"adapter {i.name!r}"
        )
        for i in infos
    }
    loaded = load_recorded_base(first, spec, tokenizer, quantization)
    if prepare_base is not None:
        prepare_base(loaded.model)
    peft_model = PeftModel.from_pretrained(loaded.model, str(first.folder), adapter_name=first.name)
    for info in infos[1:]:
        peft_model.load_adapter(str(info.folder), adapter_name=info.name)
    peft_model.eval()
    return AdaptedModel(peft_model, tokenizer, loaded, {i.name: i for i in infos}, checks)


def _resolve_all(adapters: AdapterRef | Sequence[AdapterRef]) -> list[AdapterInfo]:
    refs = [adapters] if isinstance(adapters, (str, Path, AdapterInfo)) else list(adapters)
    if not refs:
        raise UsageError(
            "no adapter given", hint="give a run directory, an adapter folder or a Hub reference"
        )
    infos = [resolve_adapter(ref) for ref in refs]
    names = [i.name for i in infos]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(
            f"two adapters are named {', '.join(dupes)}", hint="give each adapter a distinct name"
        )
    return infos


def _check_compatible(infos: list[AdapterInfo]) -> None:
    """Adapters loaded on one base object must agree on what the base is loaded as."""
    first = infos[0]
    for other in infos[1:]:
        differs = [
            what
            for what, a, b in (
                ("head", first.head, other.head),
                ("labels", first.labels, other.labels),
                ("pooling", first.pooling, other.pooling),
                ("multi_label", first.multi_label, other.multi_label),
                ("base config", first.base_model.get("config_sha256"), other.base_model.get("config_sha256")),
            )
            if a != b
        ]
        if differs:
            raise UsageError(
                f"adapters {first.name!r} and {other.name!r} cannot share one base model: their "
                + ", ".join(differs)
                + " differ",
                hint="load them separately (each head needs the base loaded with its own classifier)",
            )


def _base_spec(
    info: AdapterInfo, base: str | Path | None, model: ModelSpec | None, changes: dict
) -> ModelSpec:
    template = model
    if template is None and info.run is not None and info.run.recipe is not None:
        template = info.run.recipe.model
    override = base if base is not None else (model.name_or_path if model is not None else None)
    if not info.base_model.get("name_or_path") and override is None:
        raise ModelLoadError(f"adapter {info.name!r} records no base model", hint="pass the base explicitly")
    return recorded_base_spec(info.base_model, template=template, base=override, **changes)


def adapter_tokenizer(info: AdapterInfo, spec: ModelSpec):
    """The tokenizer saved beside the adapter (chat template and pad token as trained), else the base's."""
    if (info.folder / "tokenizer_config.json").is_file():
        spec = spec.model_copy(update={"tokenizer": str(info.folder)})
    return load_tokenizer(spec)


def base_spec_for(
    info: AdapterInfo, *, base: str | Path | None = None, model: ModelSpec | None = None, **changes: Any
) -> ModelSpec:
    """The ModelSpec that loads ``info``'s recorded base (see :func:`load_adapted` for the arguments)."""
    return _base_spec(info, base, model, changes)


def load_recorded_base(
    info: AdapterInfo, spec: ModelSpec, tokenizer: Any, quantization: QuantizationSpec | None = None
) -> LoadedModel:
    """Load ``spec`` the way ``info`` was trained on it: quantized as recorded (unless ``quantization``
    says otherwise), with its head class, labels, pooling and task (the head's problem type)."""
    quant = quantization if quantization is not None else QuantizationSpec(**_quant_fields(info.quantization))
    return load_model(
        spec,
        quant,
        head=info.head,
        labels=info.labels,
        multi_label=info.multi_label,
        tokenizer=tokenizer,
        pooling=info.pooling,
        task_type=info.task_type,
    )


def _quant_fields(recorded: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in recorded.items() if k in QuantizationSpec.model_fields}


__all__ = [
    "AdaptedModel",
    "adapter_tokenizer",
    "base_spec_for",
    "load_adapted",
    "load_recorded_base",
    "resolve_adapter",
]
