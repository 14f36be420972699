"""Changes that shrink a job, each priced by re-running the estimate with that one change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .memory import EIGHT_BIT, Estimate
from .report import Suggestion
from .settings import Settings, vary
from .sharding import ALL_GROUPS

Estimator = Callable[[Settings], Estimate]


@dataclass(frozen=True)
class Change:
    key: str
    description: str
    overrides: tuple[str, ...]
    settings: Settings


def candidate_changes(st: Settings, attention_targets: tuple[str, ...]) -> list[Change]:
    """Every change that applies to `st`, from the cheapest in quality/speed to the most intrusive."""
    out: list[Change] = []
    if st.micro_batch > 1:
        b, ga = st.micro_batch // 2, st.grad_accum * 2
        out.append(
            Change(
                "micro_batch",
                f"halve the micro-batch to {b} (accumulate {ga} steps: same effective batch)",
                (f"training.batch_size={b}", f"training.gradient_accumulation_steps={ga}"),
                vary(st, micro_batch=b, grad_accum=ga, padded=st.padded and b > 1),
            )
        )
    if not st.gradient_checkpointing:
        out.append(
            Change(
                "gradient_checkpointing",
                "turn gradient checkpointing on (~30% slower steps)",
                # under FSDP the checkpointing is FSDP's (the recipe refuses both at once)
                ("distributed.fsdp.activation_checkpointing=true",)
                if st.strategy == "fsdp"
                else ("training.gradient_checkpointing=true",),
                vary(st, gradient_checkpointing=True),
            )
        )
    if st.optimizer not in EIGHT_BIT and st.optimizer not in ("sgd", "adafactor", "lion_8bit"):
        out.append(
            Change(
                "optimizer_8bit",
                "use the paged 8-bit AdamW optimizer",
                ("training.optimizer=paged_adamw_8bit",),
                vary(st, optimizer="paged_adamw_8bit"),
            )
        )
    if st.adapter and st.lora_dropout > 0:
        out.append(
            Change(
                "lora_dropout",
                "set LoRA dropout to 0 (no dropped-out input copies)",
                ("adapter.dropout=0",),
                vary(st, lora_dropout=0.0),
            )
        )
    if st.attention == "eager":
        out.append(
            Change(
                "sdpa",
                "use SDPA attention instead of eager",
                ("model.attn_implementation=sdpa",),
                vary(st, attention="sdpa"),
            )
        )
    out += _adapter_changes(st, attention_targets) + _sharding_changes(st)
    if st.seq_len >= 256:
        n = st.seq_len // 2
        out.append(
            Change(
                "seq_len",
                f"shorten sequences to {n} tokens (longer examples are dropped or truncated)",
                (f"data.max_seq_length={n}",),
                vary(st, seq_len=n),
            )
        )
    return out


def _adapter_changes(st: Settings, attention_targets: tuple[str, ...]) -> list[Change]:
    out: list[Change] = []
    if st.mode == "full":
        out.append(
            Change("lora", "train a LoRA adapter instead of the full model", (), vary(st, mode="lora"))
        )
    if not st.quantized:
        out.append(
            Change(
                "qlora",
                "quantize the base model to NF4 (QLoRA)",
                ("quantization.method=nf4",),
                vary(st, mode="qlora", quantization="nf4"),
            )
        )
    if st.adapter and attention_targets and st.target_modules != attention_targets:
        listed = ", ".join(attention_targets)
        out.append(
            Change(
                "attention_only",
                f"put LoRA on the attention projections only ({listed})",
                (f"adapter.target_modules=[{listed}]",),
                vary(st, target_modules=attention_targets),
            )
        )
    if st.adapter and st.rank >= 8:
        out.append(
            Change(
                "rank",
                f"halve the LoRA rank to {st.rank // 2}",
                (f"adapter.rank={st.rank // 2}",),
                vary(st, rank=st.rank // 2),
            )
        )
    return out


def _sharding_changes(st: Settings) -> list[Change]:
    """With several GPUs: shard what DDP copies, shard the parameters too, move state to CPU RAM, or
    spread a sharded job over twice the GPUs."""
    n, out = st.num_gpus, []
    full = dict(shard=ALL_GROUPS, sharded_model=True, upcast_unquantized=False)
    if n > 1 and st.strategy == "ddp":
        out.append(
            Change(
                "fsdp",
                f"shard parameters, gradients and optimizer state across the {n} GPUs (FSDP)",
                ("distributed.strategy=fsdp",),
                vary(st, strategy="fsdp", offload=(), **full),
            )
        )
    if st.strategy in ("fsdp", "deepspeed") and "params" not in st.shard:
        key = (
            "distributed.fsdp.sharding=full_shard"
            if st.strategy == "fsdp"
            else "distributed.deepspeed.stage=3"
        )
        out.append(Change("shard_params", "shard the parameters too", (key,), vary(st, **full)))
    if st.strategy == "fsdp" and not st.offload:
        out.append(
            Change(
                "cpu_offload",
                "keep the sharded parameters, gradients and optimizer state in CPU RAM (slower steps)",
                ("distributed.fsdp.cpu_offload=true",),
                vary(st, offload=ALL_GROUPS),
            )
        )
    if st.strategy == "deepspeed" and "optimizer" not in st.offload:
        out.append(
            Change(
                "offload_optimizer",
                "keep the optimizer state in CPU RAM (DeepSpeed's CPU AdamW)",
                ("distributed.deepspeed.offload_optimizer=true", "training.optimizer=adamw_torch"),
                vary(st, offload=(*st.offload, "optimizer"), optimizer="adamw_torch"),
            )
        )
    if "params" in st.shard:
        out.append(
            Change(
                "more_gpus",
                f"spread the job over {2 * n} GPUs (lora-adapt run --num-processes {2 * n})",
                (),
                vary(st, num_gpus=2 * n),
            )
        )
    return out


def rank_suggestions(
    st: Settings, estimator: Estimator, budget: int | None, attention_targets: tuple[str, ...]
) -> list[Suggestion]:
    """Each applicable change with its re-estimated peak; those that fit first, then by saving."""
    base = estimator(st).peak
    priced = []
    for change in candidate_changes(st, attention_targets):
        peak = estimator(change.settings).peak
        if peak < base:
            priced.append(
                Suggestion(
                    change.key,
                    change.description,
                    change.overrides,
                    peak,
                    base - peak,
                    None if budget is None else peak <= budget,
                )
            )
    return sorted(priced, key=lambda s: (s.fits is False, -s.saving_bytes))


def combine(
    st: Settings, estimator: Estimator, budget: int, attention_targets: tuple[str, ...]
) -> Suggestion | None:
    """Apply the biggest remaining saving again and again until the job fits (or nothing is left)."""
    current, applied, overrides = st, list[Change](), list[str]()
    base = estimator(st).peak
    while estimator(current).peak > budget:
        options = [
            (estimator(c.settings).peak, c)
            for c in candidate_changes(current, attention_targets)
            if c.key not in {a.key for a in applied}
        ]
        options = [(p, c) for p, c in options if p < estimator(current).peak]
        if not options:
            break
        _, best = min(options, key=lambda pc: pc[0])
        applied.append(best)
        overrides += list(best.overrides)
        current = best.settings
    if not applied:
        return None
    peak = estimator(current).peak
    return Suggestion(
        "+".join(c.key for c in applied),
        " + ".join(c.description.split(" (")[0] for c in applied),
        tuple(overrides),
        peak,
        base - peak,
        peak <= budget,
    )
