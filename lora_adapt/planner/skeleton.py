"""The model skeleton: the real architecture built on the meta device (no memory, no weights), with
the recipe's LoRA attached by peft, so every static count is exact (tied weights, GQA, untied heads,
DoRA magnitudes, classifier heads) rather than a hand formula.

Layer roles are read from shapes, not from architecture names: inside a repeated block, a linear whose
parent module's path mentions attention is an attention projection, one that maps hidden ->
intermediate feeds the MLP, one that maps intermediate -> hidden closes it."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any, Literal

from ..recipe.derived import HEADS


@dataclass(frozen=True)
class LinearSlot:
    """One linear layer inside the first repeated block (the others are copies)."""

    name: str  # path relative to the block, e.g. "self_attn.q_proj"
    d_in: int
    d_out: int
    role: str  # "attn_in" | "attn_out" | "mlp_in" | "mlp_out"
    target: bool  # wrapped by LoRA


@dataclass(frozen=True)
class Tensor:
    name: str
    numel: int
    rows: int  # first dimension (int8 keeps one fp32 scale per row)
    quantized: bool  # bitsandbytes would quantize it (a linear weight inside the backbone)
    trainable: bool  # trainable in LoRA mode (adapter weights, DoRA magnitudes, modules_to_save)
    is_adapter: bool  # created by peft (not present in the base model)


@dataclass(frozen=True)
class Skeleton:
    """Exact counts and the dimensions the activation estimate needs."""

    model_type: str
    num_layers: int
    hidden: int
    q_dim: int
    kv_dim: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    hidden_dropout: float
    attn_dropout: float
    tied_embeddings: bool
    gated_mlp: bool
    rms_norm: bool
    tensors: tuple[Tensor, ...]
    block: tuple[LinearSlot, ...]
    adapter_trainable: int  # peft's trainable count (0 without an adapter)
    output_head_numel: int  # lm_head / classifier weight numel
    block_prefix: str = ""  # tensor-name prefix of the first repeated block, e.g. "model.layers.0."


@dataclass(frozen=True)
class AdapterShape:
    """The part of an adapter spec that changes the skeleton (hashable, for the cache)."""

    method: str = "lora"  # "lora" | "dora"
    rank: int = 16
    target_modules: str | tuple[str, ...] = "all-linear"
    modules_to_save: tuple[str, ...] = ()
    bias: Literal["none", "all", "lora_only"] = "none"


def build_skeleton(
    config: Any, *, head: str = "causal_lm", num_labels: int = 2, adapter: AdapterShape | None = None
) -> Skeleton:
    """The meta-device skeleton of `config` with `adapter` attached (cached: the planner re-estimates often)."""
    key = (config.to_json_string(use_diff=False), head, num_labels, adapter)
    return _cached(_Key(key, config))


class _Key:
    """Carries an unhashable config through lru_cache; compared by its JSON and options only."""

    def __init__(self, key: tuple, config: Any):
        self.key, self.config = key, config

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and other.key == self.key


@functools.lru_cache(maxsize=64)
def _cached(key: _Key) -> Skeleton:
    _, head, num_labels, adapter = key.key
    return _make_skeleton(key.config, head, num_labels, adapter)


def meta_model(config: Any, head: str = "causal_lm", num_labels: int = 2):
    """The architecture of `config` on the meta device (no memory is allocated)."""
    import torch
    import transformers

    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")
    auto = {
        "causal_lm": transformers.AutoModelForCausalLM,
        "sequence_classification": transformers.AutoModelForSequenceClassification,
        "token_classification": transformers.AutoModelForTokenClassification,
    }[head]
    if head != "causal_lm":
        config = copy.deepcopy(config)
        config.num_labels = num_labels
        if getattr(config, "pad_token_id", None) is None:
            config.pad_token_id = 0
    with torch.device("meta"):
        return auto.from_config(config)


def lora_config(adapter: AdapterShape, head: str):
    """The peft LoraConfig the pipeline would build (`modeling.build_lora_config`, classifier heads trained
    in full through `modules_to_save`, as `modeling.attach_adapter` does)."""
    from ..modeling.adapters import PEFT_TASK_TYPES, build_lora_config
    from ..modeling.loading import HEAD_MODULES
    from ..recipe.schema import AdapterSpec

    spec = AdapterSpec(
        method=adapter.method,
        rank=adapter.rank,
        alpha=2 * adapter.rank,  # type: ignore[arg-type]
        target_modules=adapter.target_modules,
        modules_to_save=adapter.modules_to_save,
        bias=adapter.bias,
    )
    heads = HEAD_MODULES if head != "causal_lm" else ()
    return build_lora_config(
        spec,
        task_type=PEFT_TASK_TYPES[head],
        modules_to_save=tuple(dict.fromkeys((*adapter.modules_to_save, *heads))),
    )


def _make_skeleton(config: Any, head: str, num_labels: int, adapter: AdapterShape | None) -> Skeleton:
    from transformers.quantizers.base import get_keys_to_not_convert

    from ..modeling.loading import HEAD_MODULES

    model = meta_model(config, head, num_labels)
    # what modeling.load_model leaves unquantized: the detected output layer, or the classifier head
    keep = HEAD_MODULES if head != "causal_lm" else tuple(get_keys_to_not_convert(model))
    base_names = {n for n, _ in model.named_parameters()}
    head_numel = _output_head_numel(model, head)
    trainable = 0
    if adapter is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(adapter, head))
        trainable = model.get_nb_trainable_parameters()[0]
    slots, flags = _block_layout(model, config)
    return Skeleton(
        **_dimensions(config),
        gated_mlp=flags["gated_mlp"],
        rms_norm=flags["rms_norm"],
        tensors=_tensors(model, keep, base_names, adapter is not None),
        block=slots,
        adapter_trainable=trainable,
        output_head_numel=head_numel,
        block_prefix=_block_prefix(model, config),
    )


def _output_head_numel(model: Any, head: str) -> int:
    """Weight numel of the LM head, or of the classifier (the last linear of a head model)."""
    target = model.get_output_embeddings() if head == "causal_lm" else None
    last = 0
    for module in model.modules():
        dims = _linear_dims(module)
        if dims is not None and (target is None or module is target):
            last = dims[0] * dims[1]
    return last


def _tensors(model: Any, keep: tuple[str, ...], base_names: set[str], lora: bool) -> tuple[Tensor, ...]:
    linear_weights = {f"{n}.weight" for n, m in model.named_modules() if _linear_dims(m) is not None}
    out = []
    for name, p in model.named_parameters():
        plain = _base_name(name)
        is_adapter = plain not in base_names or ".modules_to_save." in name  # the trainable copy is extra
        kept = any(plain == f"{k}.weight" or plain.startswith(f"{k}.") for k in keep)
        quantized = name in linear_weights and not is_adapter and not kept and "modules_to_save" not in name
        out.append(
            Tensor(
                plain,
                p.numel(),
                int(p.shape[0]) if p.dim() else 1,
                quantized,
                bool(lora and p.requires_grad),
                is_adapter,
            )
        )
    return tuple(out)


def _base_name(name: str) -> str:
    """A peft parameter name mapped back to the base model's name (adapter tensors keep theirs)."""
    name = name.removeprefix("base_model.model.")
    for inner in (".base_layer.", ".original_module.", ".modules_to_save.default."):
        name = name.replace(inner, ".")
    return name


def _dimensions(config: Any) -> dict[str, Any]:
    text = _text(config)
    hidden, heads = text.hidden_size, text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or hidden // heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    attn_dropout = getattr(text, "attention_dropout", None)
    if attn_dropout is None:
        attn_dropout = getattr(text, "attention_probs_dropout_prob", 0.0)
    return {
        "model_type": text.model_type,
        "num_layers": text.num_hidden_layers,
        "hidden": hidden,
        "q_dim": heads * head_dim,
        "kv_dim": kv_heads * head_dim,
        "heads": heads,
        "kv_heads": kv_heads,
        "intermediate": getattr(text, "intermediate_size", None) or 4 * hidden,
        "vocab": text.vocab_size,
        "hidden_dropout": float(getattr(text, "hidden_dropout_prob", 0.0) or 0.0),
        "attn_dropout": float(attn_dropout or 0.0),
        "tied_embeddings": bool(getattr(text, "tie_word_embeddings", False)),
    }


def _first_block(model: Any, config: Any):
    """The first of the `num_hidden_layers` repeated blocks."""
    import torch

    n = _text(config).num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module[0]
    raise ValueError("cannot find the repeated transformer blocks in this model")


def _block_prefix(model: Any, config: Any) -> str:
    """The name prefix of the first block's tensors, as `Tensor.name` spells them."""
    block = _first_block(model, config)
    name = next(n for n, m in model.named_modules() if m is block)
    return _base_name(f"{name}.")


def _linear_dims(module: Any) -> tuple[int, int] | None:
    """(d_in, d_out) of a linear layer (torch Linear or the transposed Conv1D of GPT-2-style models)."""
    import torch

    layer = getattr(module, "base_layer", module)
    if isinstance(layer, torch.nn.Linear):
        return layer.in_features, layer.out_features
    if type(layer).__name__ == "Conv1D" and getattr(layer, "weight", None) is not None:
        return int(layer.weight.shape[0]), int(layer.weight.shape[1])
    return None


def _block_layout(model: Any, config: Any) -> tuple[tuple[LinearSlot, ...], dict[str, bool]]:
    """The linear slots of one block, their roles, and the block flags (gated MLP, RMS norm)."""
    import torch

    block = _first_block(model, config)
    found = []
    for name, module in block.named_modules():
        dims = _linear_dims(module)
        if dims is None or any(part in name for part in _PEFT_INTERNALS):
            continue
        found.append((name, dims, getattr(module, "base_layer", None) is not None))
    attention = [f for f in found if _is_attention_path(f[0])]
    mlp = [f for f in found if not _is_attention_path(f[0])]
    slots = [
        LinearSlot(
            n, d[0], d[1], "attn_out" if i == len(attention) - 1 and len(attention) > 1 else "attn_in", t
        )
        for i, (n, d, t) in enumerate(attention)
    ]
    slots += [
        LinearSlot(n, d[0], d[1], "mlp_out" if i == len(mlp) - 1 else "mlp_in", t)
        for i, (n, d, t) in enumerate(mlp)
    ]
    intermediate = _dimensions(config)["intermediate"]
    mlp_in = [s for s in slots if s.role == "mlp_in"]
    flags = {
        "gated_mlp": len(mlp_in) >= 2 or any(s.d_out == 2 * intermediate for s in mlp_in),
        "rms_norm": not any(isinstance(m, torch.nn.LayerNorm) for m in block.modules()),
    }
    return tuple(slots), flags


_PEFT_INTERNALS = ("lora_", "base_layer", "modules_to_save", "original_module")


def _is_attention_path(name: str) -> bool:
    lowered = name.lower()
    return "attn" in lowered or "attention" in lowered


def attention_targets(skeleton: Skeleton) -> tuple[str, ...]:
    """peft target names for the attention projections only: the shortest name suffix that matches no
    other linear of the block (`q_proj`, but `attention.output.dense` where the MLP also has a `dense`)."""
    names = [s.name for s in skeleton.block]
    return tuple(_unique_suffix(s.name, names) for s in skeleton.block if s.role.startswith("attn"))


def _unique_suffix(name: str, names: list[str]) -> str:
    parts = name.split(".")
    for k in range(1, len(parts) + 1):
        suffix = ".".join(parts[-k:])
        if sum(1 for n in names if n == suffix or n.endswith("." + suffix)) == 1:
            return suffix
    return name


def _text(config: Any) -> Any:
    return config.get_text_config() if hasattr(config, "get_text_config") else config
