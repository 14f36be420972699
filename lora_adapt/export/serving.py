"""Export an adapter for serving: a clean PEFT folder, a vLLM/LoRAX-checked one, or a merged model.

vLLM loads a PEFT adapter only when every feature it uses is one vLLM implements; otherwise it
refuses at load time (often at the first request, killing the engine) or, in older versions, serves
a model without the trained weights. The rules below follow vLLM's ``vllm/lora/peft_helper.py``
(``PEFTHelper.validate_legal``) and ``vllm/config/lora.py``, checked against recent releases; LoRAX
reads the same PEFT format and is held to the same rules here (its limits were not verified
separately). Each finding says what the engine would do and how to fix it; findings of severity
``reject`` stop the export unless ``force`` is given."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import artifacts as A
from ..artifacts import staged_output
from ..errors import LoraAdaptError, UsageError
from ..rundir import RunDir, read_run
from .checks import adapter_config, check_adapter_weights, lora_module_paths, tensor_names
from .outputs import check_output_dir, copy_tokenizer_files, output_keeps

TARGETS = ("peft", "vllm", "merged")
# Linear projections of the decoder layers that vLLM wraps with LoRA, by HF model_type, as HF module
# names (vLLM packs q/k/v into qkv_proj and gate/up into gate_up_proj itself and accepts these names).
# From each model's `packed_modules_mapping` in vllm/model_executor/models/ and
# https://docs.vllm.ai/en/latest/features/lora.html. Architectures not listed are not checked.
_DECODER = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
VLLM_LORA_MODULES: dict[str, frozenset[str]] = {
    "llama": _DECODER,
    "mistral": _DECODER,
    "qwen2": _DECODER,
    "qwen3": _DECODER,
    "gemma": _DECODER,
    "gemma2": _DECODER,
    "granite": _DECODER,
    "olmo2": _DECODER,
    "phi3": frozenset({"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}),
}
EMBEDDING_MODULES = frozenset({"embed_tokens", "lm_head"})
VLLM_MAX_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # vllm/config/lora.py MaxLoRARanks (newer also 1)
VLLM_DEFAULT_MAX_LORA_RANK = 16
HEAD_MODULES_TO_SAVE = frozenset(
    {"classifier", "score"}
)  # accepted by recent vLLM for classification models only
BASE_CHANGING_INITS = (
    "pissa",
    "olora",
    "corda",
    "loftq",
)  # PEFT rewrites the base weights when loading these
UNSUPPORTED_FLAGS = {
    "layer_replication": "layer_replication",
    "use_qalora": "QALoRA",
    "alora_invocation_tokens": "Activated LoRA (aLoRA)",
    "use_bdlora": "block-diagonal LoRA",
}
MERGED_FIX = "or export --target merged (a merged model needs no LoRA support)"
Echo = Callable[[str], None]


@dataclass(frozen=True)
class Issue:
    check: str
    severity: (
        str  # "reject": the engine refuses the adapter or serves it wrong; "warn": depends on version/flags
    )
    message: str
    fix: str


def export_run(
    run_dir: Path,
    out_dir: Path,
    *,
    target: str = "peft",
    force: bool = False,
    max_lora_rank: int = VLLM_DEFAULT_MAX_LORA_RANK,
    dtype: str = "bf16",
    overwrite: bool = False,
    echo: Echo = lambda _: None,
) -> dict[str, Any]:
    """Write a serving-ready folder for ``target``; returns the report written to export_report.json."""
    if target not in TARGETS:
        raise UsageError(f"--target {target!r} is not one of {', '.join(TARGETS)}")
    if target == "vllm" and max_lora_rank not in (1, *VLLM_MAX_LORA_RANKS):
        raise UsageError(
            f"--max-lora-rank {max_lora_rank} is not a value vLLM accepts",
            hint=f"one of {', '.join(map(str, VLLM_MAX_LORA_RANKS))}",
        )
    if target == "merged":
        from .merge import merge_run

        return {
            "target": "merged",
            **merge_run(run_dir, out_dir, dtype=dtype, overwrite=overwrite, echo=echo),
        }
    run = read_run(run_dir)
    out = check_output_dir(Path(out_dir), run.path, overwrite)
    stats = check_adapter_weights(run.adapter_dir)
    issues = vllm_issues(run, max_lora_rank=max_lora_rank) if target == "vllm" else []
    blocking = [i for i in issues if i.severity == "reject"]
    report = {
        "target": target,
        "adapter": {k: stats.get(k) for k in ("n_lora_pairs", "n_parameters", "use_dora")},
        "issues": [asdict(i) for i in issues],
        "refused": bool(blocking) and not force,
        "forced": force and bool(blocking),
    }
    if target == "vllm":
        report["max_lora_rank"] = max_lora_rank
        report["serve"] = _serve_hint(run, out, max_lora_rank)
    if blocking and not force:
        raise LoraAdaptError(
            f"vLLM would not serve this adapter as trained ({len(blocking)} problem(s)):\n"
            + "\n".join(f"  - {i.message}\n    fix: {i.fix}" for i in blocking),
            exit_code=2,
            hint="fix the adapter as listed, export --target merged, or pass --force to write it anyway",
        )
    with staged_output(out, overwrite=overwrite, keep=output_keeps(run.path), echo=echo) as stage:
        report["files"] = _write_clean_adapter(run, stage)
        A.atomic_write_json(stage / A.EXPORT_REPORT, report)
    return report


def vllm_issues(run: RunDir, *, max_lora_rank: int = VLLM_DEFAULT_MAX_LORA_RANK) -> list[Issue]:
    config = adapter_config(run.adapter_dir)
    suffixes = sorted({path.rsplit(".", 1)[-1] for path in lora_module_paths(run.adapter_dir)})
    return [
        *_rank_issues(config, max_lora_rank),
        *_feature_issues(config, run.head),
        *_module_issues(suffixes, run.base_model.get("model_type")),
        *_full_weight_issues(run, config),
        *_vocabulary_issues(run),
    ]


def _rank_issues(config: dict[str, Any], max_lora_rank: int) -> list[Issue]:
    rank = _max_rank(config)
    if rank <= max_lora_rank:
        return []
    allowed = _server_rank(rank)
    fix = (
        f"serve with --max-lora-rank {allowed} (and pass --max-lora-rank {allowed} here to record it)"
        if allowed
        else f"retrain with adapter.rank <= {VLLM_MAX_LORA_RANKS[-1]}, {MERGED_FIX}"
    )
    return [
        Issue(
            "rank",
            "reject",
            f"LoRA rank {rank} is greater than max_lora_rank {max_lora_rank}: vLLM refuses "
            f"to load it (max_lora_rank may be one of {', '.join(map(str, VLLM_MAX_LORA_RANKS))})",
            fix,
        )
    ]


def _max_rank(config: dict[str, Any]) -> int:
    return max([int(config.get("r", 0)), *map(int, (config.get("rank_pattern") or {}).values())])


def _server_rank(rank: int) -> int | None:
    """The smallest max_lora_rank vLLM accepts that fits ``rank`` (None above the largest)."""
    return next((r for r in VLLM_MAX_LORA_RANKS if r >= rank), None)


def _feature_issues(config: dict[str, Any], head: str) -> list[Issue]:
    issues = []
    if config.get("use_dora"):
        issues.append(
            Issue(
                "dora",
                "reject",
                "DoRA adapters are refused: 'vLLM does not yet support DoRA'",
                f"retrain with adapter.method: lora, {MERGED_FIX}",
            )
        )
    issues += _modules_to_save_issues(list(config.get("modules_to_save") or []), head)
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        issues.append(
            Issue(
                "bias",
                "reject",
                f"trained biases (bias: {config.get('bias')}, lora_bias: "
                f"{bool(config.get('lora_bias'))}) are refused: 'Adapter bias is not supported'",
                f"retrain with adapter.bias: none, {MERGED_FIX}",
            )
        )
    init = config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(BASE_CHANGING_INITS):
        issues.append(
            Issue(
                "init",
                "reject",
                f"init_lora_weights={init!r} changes the base weights when PEFT loads the "
                "adapter; recent vLLM refuses it, older versions serve it on the unchanged base (wrong outputs)",
                f"convert it to a plain LoRA with PEFT's path_initial_model_for_weight_conversion, {MERGED_FIX}",
            )
        )
    for key, name in UNSUPPORTED_FLAGS.items():
        if config.get(key):
            issues.append(
                Issue(key, "reject", f"{name} is not supported by vLLM", MERGED_FIX.removeprefix("or "))
            )
    if config.get("trainable_token_indices"):
        issues.append(
            Issue(
                "trainable_tokens",
                "warn",
                "trainable_token_indices load only in recent vLLM versions; older ones refuse the adapter",
                f"check your vLLM version, {MERGED_FIX}",
            )
        )
    return issues


def _modules_to_save_issues(modules: list[str], head: str) -> list[Issue]:
    if not modules:
        return []
    extra = sorted(set(modules) - HEAD_MODULES_TO_SAVE) if head != "causal_lm" else sorted(modules)
    if extra:
        return [
            Issue(
                "modules_to_save",
                "reject",
                f"modules_to_save {extra} hold fully trained weights that vLLM "
                "cannot load: it refuses adapters with modules_to_save ('vLLM only supports modules_to_save being "
                "None'; recent versions allow only classifier/score on classification models)",
                f"retrain without adapter.modules_to_save (LoRA on those layers instead), {MERGED_FIX}",
            )
        ]
    return [
        Issue(
            "modules_to_save",
            "warn",
            f"modules_to_save {sorted(modules)} (a classification head) load only "
            "in recent vLLM versions serving a classification model; older ones refuse the adapter",
            f"use a recent vLLM, {MERGED_FIX}",
        )
    ]


def _module_issues(suffixes: list[str], model_type: str | None) -> list[Issue]:
    issues = []
    embeddings = sorted(set(suffixes) & EMBEDDING_MODULES)
    if embeddings:
        issues.append(
            Issue(
                "embedding_lora",
                "warn",
                f"LoRA on {embeddings} loads only on vLLM versions and "
                "architectures that declare embedding_modules; elsewhere it is refused",
                f"check your vLLM version, or retrain without {embeddings} in target_modules, {MERGED_FIX}",
            )
        )
    supported = VLLM_LORA_MODULES.get(model_type or "")
    if supported is None:
        return [
            *issues,
            Issue(
                "target_modules",
                "warn",
                f"model_type {model_type!r} is not in this tool's table of "
                "vLLM LoRA layers; target modules were not checked",
                "check vLLM's supported models list",
            ),
        ]
    unknown = sorted(set(suffixes) - supported - EMBEDDING_MODULES)
    if unknown:
        issues.append(
            Issue(
                "target_modules",
                "reject",
                f"LoRA on {unknown} is refused for {model_type}: vLLM only "
                f"applies LoRA to {sorted(supported)} ('expected target modules in [...] but received [...]')",
                f"retrain with adapter.target_modules within {sorted(supported)}, {MERGED_FIX}",
            )
        )
    return issues


def _full_weight_issues(run: RunDir, config: dict[str, Any]) -> list[Issue]:
    """Full (non-LoRA) tensors outside modules_to_save: PEFT stores embedding layers this way."""
    saved = tuple(config.get("modules_to_save") or ())
    full = sorted(
        k
        for k in tensor_names(run.adapter_dir)
        if ".lora_" not in k and not any(f".{m}." in k for m in saved)
    )
    if not full:
        return []
    shown = ", ".join(full[:3]) + (f" and {len(full) - 3} more" if len(full) > 3 else "")
    return [
        Issue(
            "full_weights",
            "warn",
            f"the adapter file also holds full weights ({shown}), which PEFT saves for "
            "embedding layers; vLLM does not load them (it refuses or ignores them depending on the version), "
            "so any change to them is lost",
            f"if they differ from the base, {MERGED_FIX.removeprefix('or ')}",
        )
    ]


def _vocabulary_issues(run: RunDir) -> list[Issue]:
    base = _base_folder(run)
    if base is None or not (run.adapter_dir / "tokenizer_config.json").is_file():
        return []
    from transformers import AutoTokenizer

    vocab = json.loads((base / "config.json").read_text(encoding="utf-8")).get("vocab_size")
    tokenizer = AutoTokenizer.from_pretrained(run.adapter_dir)
    issues = []
    if vocab and len(tokenizer) > vocab:
        issues.append(
            Issue(
                "vocabulary",
                "reject",
                f"the adapter's tokenizer has {len(tokenizer)} tokens but the base "
                f"has embeddings for {vocab}: vLLM has no trained embeddings for the extra tokens (LoRA "
                "extra vocabulary is deprecated/removed)",
                f"train without added tokens, {MERGED_FIX}",
            )
        )
    if tokenizer.chat_template and tokenizer.chat_template != _chat_template(base):
        issues.append(
            Issue(
                "chat_template",
                "warn",
                "the adapter's chat template differs from the base's; vLLM formats "
                "chat requests with the served model's template, not the adapter's",
                "start vLLM with --chat-template <out>/chat_template.jinja",
            )
        )
    return issues


def _chat_template(folder: Path) -> str | None:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder).chat_template
    except (OSError, ValueError):
        return None


def _base_folder(run: RunDir) -> Path | None:
    path = run.base_model.get("resolved_path")
    return Path(path) if path and (Path(path) / "config.json").is_file() else None


def _serve_hint(run: RunDir, out: Path, max_lora_rank: int) -> str:
    base = run.base_model
    model = base.get("hub_id") or base.get("resolved_path") or base.get("name_or_path")
    rank = max(max_lora_rank, _server_rank(_max_rank(adapter_config(run.adapter_dir))) or 0)
    rank_flag = f" --max-lora-rank {rank}" if rank != VLLM_DEFAULT_MAX_LORA_RANK else ""
    return f"vllm serve {model} --enable-lora --lora-modules {run.manifest.get('name', 'adapter')}={out}{rank_flag}"


def _write_clean_adapter(run: RunDir, stage: Path) -> list[str]:
    """adapter_config.json (base recorded as its Hub id when known), weights, tokenizer files, model card."""
    config = adapter_config(run.adapter_dir)
    hub_id = run.base_model.get("hub_id")
    if hub_id:
        config["base_model_name_or_path"] = hub_id
        config["revision"] = run.base_model.get("revision")
    A.atomic_write_json(stage / A.ADAPTER_CONFIG, config)
    shutil.copy2(run.adapter_dir / A.ADAPTER_WEIGHTS, stage / A.ADAPTER_WEIGHTS)
    files = [A.ADAPTER_CONFIG, A.ADAPTER_WEIGHTS, *copy_tokenizer_files(run.adapter_dir, stage)]
    if (run.adapter_dir / A.ADAPTER_RECORD).is_file():  # keeps the export self-describing for lora-adapt
        shutil.copy2(run.adapter_dir / A.ADAPTER_RECORD, stage / A.ADAPTER_RECORD)
        files.append(A.ADAPTER_RECORD)
    card = run.path / A.MODEL_CARD
    if card.is_file():
        shutil.copy2(card, stage / A.MODEL_CARD)
        files.append(A.MODEL_CARD)
    return sorted(files)
