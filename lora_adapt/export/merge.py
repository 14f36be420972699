"""Merge a run's adapter into its base model, always reloaded unquantized, and prove the result.

What is verified, and why in this order (all logits compared in fp32):

- ``merge``: the model merged in fp32 against the unmerged base+adapter in fp32. Both hold the same
  function up to float error, so any gap is the merge itself going wrong. This is gated by
  ``max_logit_diff`` and ``max_kl``.
- ``saved``: the written weights (in the requested dtype), reloaded from disk and run in fp32, against
  the same reference. This adds the rounding to bf16/fp16 and anything lost while saving. Rounding is
  expected, so it is reported, not gated, except when the saved model is non-finite or no closer to the
  trained model than the base without adapter (the adapter's effect did not survive).
- ``adapter_effect``: the base without the adapter against the reference: the scale the other numbers
  should be read against.
- ``qlora_gap`` (QLoRA runs): the 4-bit base + adapter the run trained, against the fp32 merge. The
  adapter was fitted to quantized weights, so this gap is expected to be non-zero; it is reported.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import artifacts as A
from ..artifacts import staged_output
from ..errors import LoraAdaptError, UsageError
from ..recipe.schema import Device, ModelSpec
from ..rundir import RunDir, read_adapter, read_run
from .base import check_merge_base
from .checks import check_adapter_weights
from .outputs import check_output_dir, output_keeps
from .prompts import Prompts, held_out_prompts
from .verification import collect_logits, compare_logits, format_comparison

DEFAULT_MAX_LOGIT_DIFF = 1e-2  # a correct fp32 merge is ~1e-5 on tiny models, ~1e-3 on 7B ones
DEFAULT_MAX_KL = 1e-4
ROUNDING_WARN_SHARE = 0.1  # warn when rounding moves the model by >10% of the adapter's own effect (in KL)
MERGE_DTYPES = ("bf16", "fp16", "fp32")
Echo = Callable[[str], None]


def merge_run(
    run_dir: Path,
    out_dir: Path,
    *,
    dtype: str = "bf16",
    base: Path | None = None,
    max_logit_diff: float = DEFAULT_MAX_LOGIT_DIFF,
    max_kl: float = DEFAULT_MAX_KL,
    prompts: list[str] | None = None,
    max_shard_size: str = "5GB",
    device: Device = "auto",
    overwrite: bool = False,
    echo: Echo = lambda _: None,
) -> dict[str, Any]:
    """Write ``out_dir`` (sharded safetensors, config, generation config, tokenizer, verification).

    Refuses (exit 2) a quantized base or one other than the run's; fails (exit 1, nothing written)
    when the merged model does not reproduce base+adapter within the thresholds."""
    if dtype not in MERGE_DTYPES:
        raise UsageError(f"--dtype {dtype!r} is not one of {', '.join(MERGE_DTYPES)}")
    from ..modeling.adapted import adapter_tokenizer, base_spec_for

    run = read_run(run_dir)
    if run.pooling == "entity_start":
        raise UsageError(
            "a head with entity_start pooling cannot be merged into a transformers model: "
            "BertForSequenceClassification has no place for its two-entity classifier",
            hint="use the adapter as it is (`lora-adapt eval`, or PeftModel on the base loaded with "
            "lora_adapt.modeling.load_model(..., pooling='entity_start'))",
        )
    out_dir = check_output_dir(Path(out_dir), run.path, overwrite)
    adapter = check_adapter_weights(run.adapter_dir)
    info = read_adapter(run.path)
    spec = base_spec_for(info, base=base, dtype="fp32", device=device)
    tokenizer = adapter_tokenizer(info, spec)
    identity = check_merge_base(run, spec, tokenizer.pad_token_id)
    probe = held_out_prompts(run.recipe, tokenizer, prompts)
    echo(f"base {spec.name_or_path}: " + ", ".join(f"{k} {v}" for k, v in identity.items()))
    with staged_output(out_dir, overwrite=overwrite, keep=output_keeps(run.path), echo=echo) as stage:
        report = _merge_and_verify(run, spec, tokenizer, probe, dtype, stage, max_shard_size, echo)
        report.update(
            base={"name_or_path": spec.name_or_path, "revision": spec.revision, "checked": identity},
            adapter={k: adapter.get(k) for k in ("n_lora_pairs", "zero_b_pairs", "use_dora", "b_norm")},
            thresholds={"max_logit_diff": max_logit_diff, "max_kl": max_kl},
        )
        report["warnings"] = _warnings(report)
        _judge(report, max_logit_diff, max_kl)
        report["passed"] = True
        A.atomic_write_json(stage / A.MERGE_VERIFICATION, report)
    return report


def describe(report: dict[str, Any]) -> list[str]:
    """Human lines for the CLI (and logs)."""
    lines = [
        f"prompts: {report['prompts']['count']} from {report['prompts']['source']}"
        + (f" ({report['prompts']['path']})" if report["prompts"].get("path") else "")
    ]
    for key in ("merge", "saved", "adapter_effect", "qlora_gap"):
        part = report.get(key)
        if part and part.get("available", True):
            lines.append(f"{key}: {format_comparison(part)}  [{part['what']}]")
        elif part:
            lines.append(f"{key}: not measured ({part['reason']})")
    return lines + [f"warning: {w}" for w in report.get("warnings", [])]


def _merge_and_verify(
    run: RunDir,
    spec: ModelSpec,
    tokenizer,
    probe: Prompts,
    dtype: str,
    stage: Path,
    max_shard_size: str,
    echo: Echo,
) -> dict[str, Any]:
    from ..modeling import load_adapted
    from ..recipe.schema import QuantizationSpec

    echo(f"loading {spec.name_or_path} unquantized in fp32 and applying the adapter")
    untied: list[bool] = []
    adapted = load_adapted(
        run.path,
        model=spec,
        quantization=QuantizationSpec(),
        tokenizer=tokenizer,
        prepare_base=lambda base: untied.append(_untie_embeddings_if_adapted(base, run)),
    )
    model = adapted.model
    reference = collect_logits(model, tokenizer, probe.texts)
    with model.disable_adapter():
        base_logits = collect_logits(model, tokenizer, probe.texts)
    merged = model.merge_and_unload()
    merged_logits = collect_logits(merged, tokenizer, probe.texts)
    echo(f"saving the merged model in {dtype}")
    if run.head == "sequence_classification" and run.pooling != "model":
        from ..modeling.pooling import CONFIG_KEY

        setattr(merged.config, CONFIG_KEY, run.pooling)  # so lora-adapt reloads it pooled as trained
    _save(merged, tokenizer, stage, dtype, max_shard_size)
    del merged, model, adapted
    gc.collect()
    saved_logits = _reload_logits(run, stage, tokenizer, probe, spec.device)
    report: dict[str, Any] = {
        "dtype": dtype,
        "prompts": probe.to_json(),
        "reference": "base (unquantized, fp32) + adapter, unmerged, computed in fp32",
        "merge": _part(
            compare_logits(reference, merged_logits), "merged in fp32 vs reference: the merge alone"
        ),
        "saved": _part(
            compare_logits(reference, saved_logits),
            f"saved {dtype} weights reloaded, computed in fp32, vs reference: merge + rounding to {dtype}",
        ),
        "adapter_effect": _part(
            compare_logits(reference, base_logits),
            "base without adapter vs reference: how much the adapter changes the model",
        ),
        "untied_embeddings": any(untied),
        "pooling": run.pooling if run.head == "sequence_classification" else None,
        "qlora_gap": _qlora_gap(run, spec, tokenizer, probe, merged_logits, echo) if run.quantized else None,
    }
    return report


def _untie_embeddings_if_adapted(model, run: RunDir) -> bool:
    """Give the output head its own copy of tied input embeddings when the adapter changes either.

    Merging into one of two tied matrices changes the other too (peft issue #2777): a LoRA on
    ``lm_head`` would leak into the input embeddings. Unmerged outputs are the same either way."""
    import torch

    from .checks import adapter_config, lora_module_paths

    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    if inputs is None or outputs is None or outputs.weight is not inputs.weight:
        return False
    names = {module: name for name, module in model.named_modules()}
    touched = [
        *lora_module_paths(run.adapter_dir),
        *(adapter_config(run.adapter_dir).get("modules_to_save") or []),
    ]
    tied = (names[inputs], names[outputs])
    if not any(
        path == name or path.endswith("." + name) or name.endswith("." + path)
        for path in touched
        for name in tied
    ):
        return False
    outputs.weight = torch.nn.Parameter(inputs.weight.detach().clone())
    model.config.tie_word_embeddings = False
    return True


def _save(merged, tokenizer, stage: Path, dtype: str, max_shard_size: str) -> None:
    from ..modeling.hardware import DTYPES

    merged.to(DTYPES[dtype])
    merged.config.dtype = DTYPES[dtype]
    merged.save_pretrained(stage, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(stage)


def _reload_logits(run: RunDir, stage: Path, tokenizer, probe: Prompts, device: str):
    """Run what was written to disk, upcast to fp32: the artifact users get, not the object in memory."""
    import torch

    from ..modeling import auto_class
    from ..modeling.hardware import resolve_device

    model = auto_class(run.head).from_pretrained(stage, dtype=torch.float32).to(resolve_device(device))
    if run.head == "sequence_classification":  # read the encoder as the head was trained to
        from ..modeling.pooling import apply_pooling

        apply_pooling(model, run.pooling, tokenizer)
    logits = collect_logits(model, tokenizer, probe.texts)
    del model
    gc.collect()
    return logits


def _qlora_gap(
    run: RunDir, spec: ModelSpec, tokenizer, probe: Prompts, merged_logits, echo: Echo
) -> dict[str, Any]:
    """The quantized base + adapter, loaded as the run trained it, against the fp32 merge."""
    from ..modeling import load_adapted

    what = f"{run.quantization} base + adapter (as trained) vs the fp32 merge: expected to be non-zero"
    echo(f"loading the {run.quantization} base as in training to measure the QLoRA gap")
    try:
        adapted = load_adapted(run.path, base=spec.name_or_path, tokenizer=tokenizer)
        quantized_logits = collect_logits(adapted.model, tokenizer, probe.texts)
    except Exception as exc:  # report, never fail: the merge itself is already verified
        return {
            "available": False,
            "what": what,
            "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
        }
    del adapted
    gc.collect()
    return {"available": True, **_part(compare_logits(quantized_logits, merged_logits), what)}


def _part(numbers: dict[str, Any], what: str) -> dict[str, Any]:
    return {**numbers, "what": what}


def _warnings(report: dict[str, Any]) -> list[str]:
    saved, effect = report["saved"], report["adapter_effect"]
    out = []
    if report.get("pooling") not in (None, "model"):
        out.append(
            f"the head reads the encoder with {report['pooling']} pooling (config.json: lora_adapt_pooling); "
            "transformers' AutoModelForSequenceClassification ignores that and pools [CLS]: load the merged "
            "model with lora_adapt.modeling.load_model, or pool the hidden states the same way yourself"
        )
    if effect.get("finite") and effect["mean_kl"] < 1e-6 and effect["greedy_agreement"] == 1.0:
        out.append(
            f"the adapter barely changes the base on these prompts (mean KL {effect['mean_kl']:.2g}); "
            "the verification cannot tell a good merge from a lost adapter"
        )
    elif (
        saved.get("finite")
        and effect.get("finite")
        and saved["mean_kl"] > ROUNDING_WARN_SHARE * effect["mean_kl"]
    ):
        out.append(
            f"rounding to {report['dtype']} moves the model by {saved['mean_kl']:.2g} mean KL, more than "
            f"{ROUNDING_WARN_SHARE:.0%} of the adapter's own effect ({effect['mean_kl']:.2g}); consider --dtype fp32"
        )
    return out


def _judge(report: dict[str, Any], max_logit_diff: float, max_kl: float) -> None:
    merge, saved, effect = report["merge"], report["saved"], report["adapter_effect"]
    problems = []
    if not merge["finite"] or merge["max_logit_diff"] > max_logit_diff or merge["mean_kl"] > max_kl:
        problems.append(
            f"the fp32 merge does not reproduce base+adapter ({format_comparison(merge)}; allowed "
            f"max |logit diff| {max_logit_diff:g}, mean KL {max_kl:g})"
        )
    if not saved["finite"]:
        problems.append(
            f"the saved {report['dtype']} weights give NaN/inf logits (values overflow {report['dtype']})"
        )
    elif effect["finite"] and effect["mean_kl"] > 0 and saved["mean_kl"] >= effect["mean_kl"]:
        problems.append(
            f"the saved {report['dtype']} model is as far from the trained model as the base without "
            f"adapter (mean KL {saved['mean_kl']:.3g} vs {effect['mean_kl']:.3g}): the adapter did not survive"
        )
    if problems:
        raise LoraAdaptError(
            "merge verification failed, nothing was written: " + "; ".join(problems),
            hint="try --dtype fp32 (rounding) or check that the adapter loads with PEFT; "
            "--max-logit-diff / --max-kl raise the fp32 thresholds if the gap is expected",
        )
