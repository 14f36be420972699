"""`plan(recipe)`: the estimate for each mode, the verdict against a memory budget, and the ranked
changes that would make the recipe fit."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..recipe.derived import recipe_mode
from ..recipe.schema import Recipe
from .advice import combine, rank_suggestions
from .memory import Estimate, estimate
from .report import ModeReport, PlanReport
from .settings import MODES, Settings, settings_for, vary
from .shapes import load_config
from .sharding import sharding_note
from .skeleton import AdapterShape, Skeleton, attention_targets, build_skeleton
from .units import format_gib


def plan(
    recipe: Recipe,
    *,
    gpu_memory_bytes: int | None,
    modes: tuple[str, ...] = MODES,
    seq_len: int | None = None,
    micro_batch: int | None = None,
    device: str | None = None,
    loss_path: str | None = None,
    num_gpus: int = 1,
    strategy: str | None = None,
) -> PlanReport:
    """Predict peak training memory of `recipe` in each mode and say what to change if it does not fit;
    with ``num_gpus`` > 1, per GPU under ``strategy`` (default: the recipe's distributed.strategy)."""
    device = device or ("cpu" if recipe.model.device == "cpu" and gpu_memory_bytes is None else "cuda")
    config = load_config(
        recipe.model.name_or_path,
        revision=recipe.model.revision,
        trust_remote_code=recipe.model.trust_remote_code,
    )
    estimator = Estimator(config)
    mine = recipe_mode(recipe)
    job: dict[str, Any] = dict(
        device=device,
        seq_len=seq_len,
        micro_batch=micro_batch,
        loss_path=loss_path,
        num_gpus=num_gpus,
        strategy=strategy,
    )
    reports = []
    for mode in dict.fromkeys((*modes, mine)):
        st = settings_for(recipe, mode, **job)
        if mode in modes:
            reports.append(mode_report(st, estimator(st), gpu_memory_bytes))
    st = settings_for(recipe, mine, **job)
    targets = attention_targets(estimator.skeleton(st))
    needs_advice = gpu_memory_bytes is None or estimator(st).peak > gpu_memory_bytes
    suggestions = rank_suggestions(st, estimator, gpu_memory_bytes, targets) if needs_advice else []
    combined = (
        combine(st, estimator, gpu_memory_bytes, targets)
        if gpu_memory_bytes is not None and needs_advice
        else None
    )
    return PlanReport(
        model=recipe.model.name_or_path,
        device=device,
        budget_bytes=gpu_memory_bytes,
        recipe_mode=mine,
        seq_len=st.seq_len,
        micro_batch=st.micro_batch,
        num_gpus=st.num_gpus,
        strategy=st.strategy,
        modes=tuple(reports),
        suggestions=tuple(suggestions),
        combined=combined,
        notes=tuple(_notes(st, estimator)),
    )


class Estimator:
    """Settings -> Estimate for one model configuration, building each skeleton variant once."""

    def __init__(self, config: Any):
        self.config = config

    def skeleton(self, st: Settings) -> Skeleton:
        adapter = (
            None
            if st.mode == "full"
            else AdapterShape(
                method=st.adapter_method,
                rank=st.rank,
                target_modules=st.target_modules,
                modules_to_save=st.modules_to_save,
            )
        )
        return build_skeleton(self.config, head=st.head, num_labels=st.num_labels, adapter=adapter)

    def __call__(self, st: Settings) -> Estimate:
        return estimate(self.skeleton(st), st)


def mode_report(st: Settings, est: Estimate, budget: int | None) -> ModeReport:
    return ModeReport(
        mode=st.mode,
        terms=est.terms,
        overhead=est.overhead,
        phases=est.phases,
        peak_phase=est.peak_phase,
        peak_bytes=est.peak,
        fits=None if budget is None else est.peak <= budget,
        trainable_params=est.trainable_params,
        total_params=est.total_params,
        settings=asdict(st),
    )


LOSS_PATH_WORDS = {
    "chunked": "one chunk of logits at a time",
    "trl": "TRL's fused LM head, in tiles",
    "liger": "Liger-Kernel's fused linear cross-entropy",
}


def _notes(st: Settings, estimator: Estimator) -> list[str]:
    """What the estimate assumed where the choice is not in the recipe, and what the other choice costs."""
    notes = []
    if st.head == "causal_lm" and st.loss_path != "logits":
        full_logits = estimator(vary(st, loss_path="logits")).peak - estimator(st).peak
        notes.append(
            f"loss: training.loss_path {st.loss_path} ({LOSS_PATH_WORDS[st.loss_path]}) never holds the "
            f"full logits; a hand-written loop with full logits would need {format_gib(full_logits)} GiB more"
        )
    if st.quantized and st.upcast_unquantized and st.param_dtype != "fp32":
        upcast = estimator(st).peak - estimator(vary(st, upcast_unquantized=False)).peak
        notes.append(
            "QLoRA: peft's prepare_model_for_kbit_training (called before the adapter is attached) "
            f"upcasts the unquantized weights (embeddings, norms, head) to fp32: {format_gib(upcast)} GiB "
            "of the QLoRA peak"
        )
    if st.num_gpus > 1:
        notes.append(sharding_note(st))
    if st.device == "cuda":
        notes.append(
            "overheads on a GPU are assumptions, not counts: CUDA context 0.5 GiB, allocator slack "
            "10% of the allocated peak"
        )
    return notes
