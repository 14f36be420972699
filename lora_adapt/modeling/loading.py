"""Load a base model and its tokenizer as the recipe asks: 4-bit (NF4/FP4), 8-bit or full precision."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ModelLoadError
from ..recipe.derived import AUTO_CLASSES, Head, is_quantized, problem_type
from ..recipe.schema import ModelSpec, QuantizationSpec
from .hardware import resolve_device, resolve_dtype
from .source import ModelSource, resolve_model_source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    source: ModelSource
    quantization: str
    dtype: torch.dtype
    device: str
    head: Head
    pooling: str = "model"  # the resolved task.pooling of a sequence-classification head
    sharded: bool = False  # loaded for FSDP / ZeRO-3, which place and shard it when training starts

    @property
    def quantized(self) -> bool:
        return is_quantized(self.quantization)


def auto_class(head: Head):
    import transformers

    return getattr(transformers, AUTO_CLASSES[head])


def load_tokenizer(spec: ModelSpec, source: ModelSource | None = None):
    from transformers import AutoTokenizer

    source = source or resolve_model_source(spec)
    _hub_timeouts(source)
    ref = spec.tokenizer or source.load_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            ref, revision=source.revision, trust_remote_code=spec.trust_remote_code
        )
    except (OSError, ValueError) as exc:
        custom = _load_hint(source, exc)
        raise ModelLoadError(
            f"cannot load the tokenizer from {ref}: {_first_line(exc)}",
            hint=custom
            if "trust_remote_code" in custom
            else "offline? a Hub id needs network or a local cache; point model.name_or_path at a folder",
        ) from None
    if tokenizer.pad_token is None:
        # Pad with EOS: TRL builds labels from the completion mask, not from pad ids, so EOS is still trained.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


# The new head of a classifier model: BERT-style `classifier`, Llama/Qwen2 and other decoders `score`. It must
# stay unquantized (trained in full, saved with the adapter): transformers keeps only the output layer it
# detects, and for a BERT head that is `classifier.bias`, so `classifier` itself would be quantized.
HEAD_MODULES = ("classifier", "score")


def bnb_config(
    quant: QuantizationSpec,
    compute_dtype: torch.dtype,
    *,
    keep: tuple[str, ...] = (),
    storage: torch.dtype = torch.uint8,
):
    """Translate the recipe's quantization section into a transformers BitsAndBytesConfig.

    ``keep``: module names left unquantized (classification heads). ``storage``: the dtype the packed
    4-bit weights are stored in; FSDP shards only floating-point tensors of one dtype, so a sharded
    QLoRA stores them in the model's dtype (bitsandbytes' FSDP-QLoRA guide), otherwise uint8."""
    if not is_quantized(quant.method):
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(
            f"quantization.method '{quant.method}' needs bitsandbytes, which is not installed",
            hint="pip install 'lora-adapt[quant]'  (or set quantization.method: none)",
        )
    from transformers import BitsAndBytesConfig

    skip = {"llm_int8_skip_modules": list(keep)} if keep else {}
    if quant.method == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, **skip)
    return BitsAndBytesConfig(
        **skip,
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.method,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_quant_storage=storage,
    )


def load_model(
    spec: ModelSpec,
    quant: QuantizationSpec,
    *,
    head: Head = "causal_lm",
    labels: tuple[str, ...] | None = None,
    multi_label: bool = False,
    tokenizer=None,
    pooling: str = "model",
    task_type: str = "classification",
    sharded: bool = False,
) -> LoadedModel:
    """Load ``spec`` as ``head``; a sequence-classification head reads the encoder as ``pooling`` says
    (``auto`` is resolved here: see modeling/pooling.py). For a regression task ``labels`` are the target
    names (one output each, MSE loss). ``sharded``: for FSDP / ZeRO-3, which move the model to the GPUs as
    they shard it (it is neither placed here nor given a device map)."""
    source = resolve_model_source(spec)
    _hub_timeouts(source)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    compute = resolve_dtype(quant.compute_dtype, device) if quant.compute_dtype != "auto" else dtype
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(spec, source)
    kwargs: dict[str, Any] = dict(
        revision=source.revision,
        trust_remote_code=spec.trust_remote_code,
        dtype=dtype,
        use_safetensors=None if spec.allow_pickle else True,
    )
    if spec.attn_implementation != "auto":
        kwargs["attn_implementation"] = spec.attn_implementation
    keep = HEAD_MODULES if head != "causal_lm" else ()
    quantization_config = bnb_config(quant, compute, keep=keep, storage=dtype if sharded else torch.uint8)
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        if not sharded:  # one process per GPU: the current device is this process's (set by accelerate)
            kwargs["device_map"] = {"": device if device != "cuda" else torch.cuda.current_device()}
    if head != "causal_lm":
        kwargs.update(_head_kwargs(head, labels, problem_type(task_type, multi_label)))
    try:
        model = auto_class(head).from_pretrained(source.load_path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot load model {spec.name_or_path}: {_first_line(exc)}", hint=_load_hint(source, exc)
        ) from None
    if quantization_config is None and not sharded:
        model.to(device)
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    resolved = "model"
    if head == "sequence_classification":
        from .pooling import apply_pooling, resolve_pooling

        resolved = resolve_pooling(
            pooling, task_type, source.load_path, model.config, source.revision, tokenizer
        )
        apply_pooling(model, resolved, tokenizer)
    return LoadedModel(model, tokenizer, source, quant.method, dtype, device, head, resolved, sharded)


def _hub_timeouts(source: ModelSource) -> None:
    """Downloads from the Hub time out (huggingface_hub's shared client has no timeout of its own)."""
    if source.kind == "hub":
        from ..hub.network import apply_timeouts

        apply_timeouts()


def _head_kwargs(head: Head, labels: tuple[str, ...] | None, problem: str) -> dict[str, Any]:
    if not labels:
        raise ModelLoadError(
            f"a {head} head needs the label set", hint="list task.labels or put labels in the data"
        )
    kwargs: dict[str, Any] = dict(
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    if problem != "single_label_classification" and head == "sequence_classification":
        kwargs["problem_type"] = problem  # regression (MSE) or multi-label (BCE); single-label is inferred
    return kwargs


def _load_hint(source: ModelSource, exc: Exception) -> str:
    text = str(exc).lower()
    if "custom code" in text or "trust_remote_code" in text:
        return (
            "the model ships its own Python code: set model.trust_remote_code: true if you trust its source "
            "(the code runs on this machine), or use a model transformers supports natively"
        )
    if "does not recognize this architecture" in text or "unrecognized" in text:
        return (
            "transformers does not know this model type: upgrade transformers, or set "
            "model.trust_remote_code: true if the model ships its own code and you trust it"
        )
    if "safetensors" in text:
        return "only safetensors weights are loaded; set model.allow_pickle: true if you trust the .bin files"
    if source.kind == "hub":
        return "offline or wrong id? check the Hub id and revision, or point model.name_or_path at a local folder"
    return "check that the folder holds a complete save_pretrained output"


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
