"""`lora-adapt bench`: full vs LoRA vs QLoRA (and hand-written peers) on the same job, measured."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ..errors import UsageError
from . import main


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--modes", default="full,lora,qlora", show_default=True, help="lora-adapt arms to run.")
@click.option(
    "--peers",
    default="trainer,trl",
    show_default=True,
    help="Peer arms: 'trainer' (transformers Trainer + peft by hand), 'trl' (SFTTrainer defaults); "
    "'' for none.",
)
@click.option("--packing", is_flag=True, help="Add a lora-adapt arm with packing on (generative recipes).")
@click.option(
    "--loss-paths",
    default="",
    help="Add a LoRA arm per training.loss_path named here (chunked,trl,liger), generative recipes.",
)
@click.option(
    "--steps", type=click.IntRange(min=1), default=3, show_default=True, help="Timed steps per run."
)
@click.option(
    "--warmup", type=click.IntRange(min=0), default=1, show_default=True, help="Untimed steps first."
)
@click.option(
    "--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Interleaved repeats."
)
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), default="benchmarks/results", show_default=True
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    help="Where models, data and logs go (default: a temp dir).",
)
@click.option("--label", help="File name stem of the results (default: <cpu|gpu>_<model>).")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="CPU threads per run (OMP_NUM_THREADS). On a shared machine, 1 keeps runs from stalling each other.",
)
def bench(
    recipe: str,
    modes: str,
    peers: str,
    packing: bool,
    loss_paths: str,
    steps: int,
    warmup: int,
    repeats: int,
    out_dir: str,
    workdir: str | None,
    label: str | None,
    threads: int | None,
) -> None:
    """Benchmark RECIPE as full fine-tuning, LoRA and QLoRA; write JSON, markdown and charts."""
    from ..bench import PEERS, run_bench
    from ..planner import MODES
    from ..recipe.derived import LOSS_PATHS

    chosen = _split(modes, MODES, "--modes")
    peer_arms = _split(peers, PEERS, "--peers") if peers.strip() else ()
    loss_arms = _split(loss_paths, LOSS_PATHS, "--loss-paths") if loss_paths.strip() else ()
    command = (
        "lora-adapt " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "lora-adapt bench"
    )
    run_bench(
        Path(recipe),
        modes=chosen,
        peers=peer_arms,
        steps=steps,
        warmup=warmup,
        repeats=repeats,
        out_dir=Path(out_dir),
        workdir=Path(workdir) if workdir else None,
        packing=packing,
        loss_paths=loss_arms,
        label=label,
        command=command,
        threads=threads,
        echo=click.echo,
    )


def _split(text: str, allowed: tuple[str, ...], option: str) -> tuple[str, ...]:
    chosen = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [x for x in chosen if x not in allowed]
    if unknown or not chosen:
        raise UsageError(
            f"{option}: unknown value(s) {unknown or text!r}", hint=f"choose from {','.join(allowed)}"
        )
    return chosen
