"""What the runner asks one worker process to do (a plain JSON-able value)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

GPU_CAP_ENV = "LORA_ADAPT_BENCH_GPU_MEMORY"


@dataclass(frozen=True)
class ArmSpec:
    """What the runner asks one worker to do."""

    arm: str  # display name, e.g. "lora-adapt/qlora"
    kind: str  # "lora-adapt" | "peer-trainer" | "peer-trl"
    mode: str  # "full" | "lora" | "qlora"
    recipe: str  # path of the resolved benchmark recipe (YAML)
    workdir: str
    warmup: int
    steps: int
    repeat: int
    overrides: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
