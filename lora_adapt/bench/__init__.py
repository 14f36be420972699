"""Benchmarks: the same job as full fine-tuning, LoRA and QLoRA (and as hand-written peers), each arm
in its own process, interleaved and repeated; results checked against the memory planner."""

from __future__ import annotations

from .runner import PEERS, Arm, arms_for, run_bench

__all__ = ["PEERS", "Arm", "arms_for", "run_bench"]
