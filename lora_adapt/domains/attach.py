"""Attaching one trained adapter to a shared PEFT model, with every weight accounted for.

PEFT loads an adapter as ``add_adapter`` (inject LoRA layers, copy each ``modules_to_save`` module) plus
``set_peft_model_state_dict``; ``PeftModel.load_adapter`` does the same. Two things are added here:

- **Classifier heads of different widths.** A head adapter keeps its own copy of the classifier (PEFT
  ``modules_to_save``), but PEFT copies the *base's* classifier, so an adapter with another label count
  fails with a size mismatch (peft 0.21: ``RuntimeError ... size mismatch for ...classifier.modules_to_save``),
  and a mixed-adapter batch stacks each row's output, which needs one width. Every adapter's classifier copy
  is therefore a ``Linear`` of the widest label set loaded so far (``width``): its own rows first, zero rows
  after. Callers slice each row's logits to its adapter's own labels, so padded rows are never read.
- **Nothing silently dropped.** A weight in the adapter file with no place in the base (a target module the
  base lacks) or a weight of the adapter left unloaded is refused by name, and the half-added adapter removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ModelLoadError
from ..modeling.loading import HEAD_MODULES


@dataclass
class Attached:
    """What attaching one adapter did: its own parameters and what the model holds more afterwards."""

    model: Any  # the PeftModel (created for the first adapter)
    width: int | None  # the adapter's own label count (head adapters)
    parameters: int  # numbers in the adapter file
    parameter_bytes: int  # the same, at the model's parameter dtype
    padding_bytes: int  # zero classifier rows added (to this adapter and to narrower ones already loaded)


def attach(model, base, name: str, folder: str, *, head_width: int) -> Attached:
    """Add the adapter in ``folder`` as ``name`` to ``model`` (a PeftModel), or wrap ``base`` when ``model``
    is None. ``head_width``: the classifier width the set's head adapters share (0 for causal LMs)."""
    from peft import PeftConfig, get_peft_model, load_peft_weights, set_peft_model_state_dict

    config = PeftConfig.from_pretrained(folder)
    config.inference_mode = True
    device = next((model or base).parameters()).device
    weights = load_peft_weights(folder, device=str(device))
    numbers = sum(t.numel() for t in weights.values())  # the adapter's own, before any head padding
    created = model is None
    try:
        model = get_peft_model(base, config, adapter_name=name) if created else _add(model, name, config)
    except ValueError as exc:  # e.g. "Target modules {...} not found in the base model"
        raise ModelLoadError(
            f"adapter {name!r} does not fit this base: {str(exc).splitlines()[0]}",
            hint="serve it on the base it was trained on",
        ) from None
    try:
        width, padding = _fit_heads(model, name, weights, head_width)
        result = set_peft_model_state_dict(model, weights, adapter_name=name)
        _check_loaded(model, name, result, weights)
    except BaseException:
        if not created:
            model.delete_adapter(name)
        raise
    model.eval()
    return Attached(model, width, numbers, numbers * _parameter_dtype(model).itemsize, padding)


def _add(model, name: str, config):
    model.add_adapter(name, config)
    return model


def _parameter_dtype(model) -> torch.dtype:
    return next(p.dtype for p in model.parameters() if p.dtype.is_floating_point)


def head_wrappers(model, name: str | None = None) -> dict[str, Any]:
    """``{module path: ModulesToSaveWrapper}`` for the classifier heads (``HEAD_MODULES``), optionally only
    those holding a copy for adapter ``name``."""
    from peft.utils.other import ModulesToSaveWrapper

    return {
        path: module
        for path, module in model.named_modules()
        if isinstance(module, ModulesToSaveWrapper)
        and path.rsplit(".", 1)[-1] in HEAD_MODULES
        and (name is None or name in module.modules_to_save)
    }


def _fit_heads(model, name: str, weights: dict[str, torch.Tensor], width: int) -> tuple[int | None, int]:
    """Resize ``name``'s classifier copies to the shared width (padding the file's weights to match) and
    widen the other adapters' copies when ``name`` brings more labels. Returns (own width, padding bytes)."""
    own: int | None = None
    padding = 0
    for path, wrapper in head_wrappers(model, name).items():
        key = f"{path}.weight"
        if key not in weights:
            continue
        rows, columns = weights[key].shape
        own = rows
        target = max(rows, width, *(_width(m) for n, m in wrapper.modules_to_save.items() if n != name))
        copy = wrapper.modules_to_save[name]
        if tuple(copy.weight.shape) != (target, columns):
            wrapper.modules_to_save[name] = _linear(copy, target, columns)
        for bias_or_weight in (key, f"{path}.bias"):
            if bias_or_weight in weights:
                tensor = weights[bias_or_weight]
                padding += (target - rows) * tensor[0].numel() * _parameter_dtype(model).itemsize
                weights[bias_or_weight] = _pad_rows(tensor, target)
        padding += _widen_others(wrapper, name, target)
    return own, padding


def _width(module) -> int:
    return int(module.weight.shape[0])


def _linear(like, rows: int, columns: int) -> torch.nn.Linear:
    weight = like.weight
    layer = torch.nn.Linear(
        columns, rows, bias=like.bias is not None, device=weight.device, dtype=weight.dtype
    )
    torch.nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        torch.nn.init.zeros_(layer.bias)
    layer.requires_grad_(False)
    return layer


def _pad_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    if tensor.shape[0] == rows:
        return tensor
    out = torch.zeros((rows, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    out[: tensor.shape[0]] = tensor
    return out


def _widen_others(wrapper, name: str, rows: int) -> int:
    """Widen narrower copies of other adapters to ``rows`` (their own rows kept, zeros after)."""
    added = 0
    for other, module in list(wrapper.modules_to_save.items()):
        if other == name or _width(module) >= rows:
            continue
        wider = _linear(module, rows, module.weight.shape[1])
        with torch.no_grad():
            wider.weight[: _width(module)] = module.weight
            if module.bias is not None:
                wider.bias[: module.bias.shape[0]] = module.bias
        added += (rows - _width(module)) * (module.weight.shape[1] + (module.bias is not None))
        wrapper.modules_to_save[other] = wider
    return added * wrapper.original_module.weight.element_size()


def _check_loaded(model, name: str, result, weights: dict[str, torch.Tensor]) -> None:
    """Every tensor of the file went somewhere, and every parameter of the adapter came from the file."""
    unexpected = list(getattr(result, "unexpected_keys", []))
    own = {k for k, _ in model.named_parameters() if _belongs(k, name)}
    missing = sorted(own & set(getattr(result, "missing_keys", [])))
    if unexpected or missing:
        parts = []
        if unexpected:
            parts.append(f"weights with no place in the base: {', '.join(sorted(unexpected)[:4])}")
        if missing:
            parts.append(f"weights the adapter file lacks: {', '.join(missing[:4])}")
        raise ModelLoadError(
            f"adapter {name!r} does not fit this base ({'; '.join(parts)})",
            hint="the adapter was trained on another architecture or saved incompletely",
        )
    if not weights:
        raise ModelLoadError(f"adapter {name!r} has no weights", hint="check adapter_model.safetensors")


def _belongs(parameter: str, name: str) -> bool:
    """A parameter of adapter ``name``: PEFT names them ``...lora_A.<name>.weight``,
    ``...modules_to_save.<name>.weight``, ``...lora_magnitude_vector.<name>...``."""
    parts = parameter.split(".")
    return any(parts[i] == name and i > 0 for i in range(len(parts) - 1))
