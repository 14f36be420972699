"""One benchmark arm in its own process (so peak RSS belongs to that arm alone):
`python -m lora_adapt.bench.worker SPEC.json RESULT.json`."""

from __future__ import annotations

import json
import resource
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .spec import GPU_CAP_ENV, ArmSpec


def rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def run_arm(spec: ArmSpec) -> dict[str, Any]:
    import torch

    from ..quiet import quiet_libraries
    from ..recipe import load_recipe
    from .arms import build_trainer
    from .probe import StepProbe

    quiet_libraries()
    rss_imports = rss_bytes()
    cap = _cap_gpu_memory()
    recipe = load_recipe(spec.recipe, spec.overrides)
    probe = StepProbe(spec.warmup, spec.steps)
    trainer = build_trainer(spec.kind, recipe, spec.mode, Path(spec.workdir), [probe])
    probe.trainer = trainer
    rss_before = rss_bytes()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    out = {
        "spec": spec.to_json(),
        "gpu_memory_cap_bytes": cap,
        "torch_threads": torch.get_num_threads(),
        "rss_after_imports": rss_imports,
        "rss_before_train": rss_before,
        "peak_rss": peak_rss_bytes(),
        **_params(trainer.model),
        **_timings(probe),
    }
    if cuda:
        out |= {
            "cuda_max_allocated": torch.cuda.max_memory_allocated(),
            "cuda_max_reserved": torch.cuda.max_memory_reserved(),
        }
    out["model_flops_per_token"] = model_flops_per_token(trainer.model, probe.result.longest_batch)
    return out


def model_flops_per_token(model, batch: tuple[int, int]) -> float | None:
    """FlopCounterMode over the model's own forward + backward (a plain sum of the logits as the loss)
    at the benchmark's batch shape, after training and after the memory peaks were read. The in-step
    count (`flops_per_token`) depends on the loss implementation: TRL's fused head accumulates its
    gradient matmuls in place (`addmm_`), which FlopCounterMode does not see."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    rows, length = batch
    if not rows:
        return None
    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    device = next(model.parameters()).device
    ids = torch.randint(0, config.vocab_size, (rows, length), generator=torch.Generator().manual_seed(0)).to(
        device
    )
    model.train()
    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float().sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / ids.numel()


def _cap_gpu_memory() -> int | None:
    """Emulate a smaller card: `LORA_ADAPT_BENCH_GPU_MEMORY=23.5GiB` caps this process's CUDA allocations."""
    import os

    import torch

    text = os.environ.get(GPU_CAP_ENV)
    if not text or not torch.cuda.is_available():
        return None
    from ..planner.units import parse_size

    cap = parse_size(text)
    torch.cuda.set_per_process_memory_fraction(
        min(1.0, cap / torch.cuda.get_device_properties(0).total_memory)
    )
    return cap


def _params(model) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_params": trainable, "total_params": sum(p.numel() for p in model.parameters())}


def _timings(probe) -> dict[str, Any]:
    r = probe.result
    seconds = sum(s.seconds for s in r.steps)
    tokens = sum(s.tokens for s in r.steps)
    processed = sum(s.processed for s in r.steps)
    return {
        "steps": [asdict(s) for s in r.steps],
        "timed_seconds": seconds,
        "tokens": tokens,
        "processed": processed,
        "tokens_per_s": tokens / seconds if seconds else None,
        "padding_share": 1 - tokens / processed if processed else None,
        "longest_batch": list(r.longest_batch),
        "saved_bytes": r.saved_bytes,
        "saved_batch": list(r.saved_batch),
        "flops": r.flops,
        "flop_tokens": r.flop_tokens,
        "flops_per_token": r.flops / r.flop_tokens if r.flop_tokens else None,
        "final_loss": r.losses[-1] if r.losses else None,
        "losses": r.losses,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    raw = json.loads(spec_path.read_text())
    spec = ArmSpec(**{**raw, "overrides": tuple(raw.get("overrides", ()))})
    result = run_arm(spec)
    result_path.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
