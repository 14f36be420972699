"""The unquantized base a merge folds an adapter into, refusing any other.

The identity check itself is ``modeling.identity`` (shared with every reload); a merge adds one rule:
a quantized checkpoint is refused outright, because merging into 4-bit weights re-quantizes the
update and silently changes the model."""

from __future__ import annotations

from pathlib import Path

from ..errors import LoraAdaptError
from ..modeling.identity import check_base, read_base_config, recorded_base_spec
from ..recipe.schema import Device, ModelSpec
from ..rundir import RunDir


def base_spec(run: RunDir, base: Path | None = None, *, device: Device = "auto") -> ModelSpec:
    """The ModelSpec that loads the run's base (or the ``base`` override) unquantized, in fp32."""
    template = run.recipe.model if run.recipe is not None else None
    return recorded_base_spec(run.base_model, template=template, base=base, dtype="fp32", device=device)


def check_merge_base(run: RunDir, spec: ModelSpec, pad_token_id: int | None) -> dict[str, str]:
    """Refuse (exit 2) a quantized base or one that differs from the recorded base; say what was compared."""
    config = read_base_config(spec)
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "a quantization method")
        raise LoraAdaptError(
            f"{spec.name_or_path} is a quantized checkpoint ({method}); merging into quantized weights re-quantizes "
            "the LoRA update and changes the model",
            exit_code=2,
            hint="pass --base pointing at the original unquantized model (fp16/bf16/fp32 weights)",
        )
    return check_base(run.base_model, spec, pad_token_id, config=config)
