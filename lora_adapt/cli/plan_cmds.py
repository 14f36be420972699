"""`lora-adapt plan`: predict peak training memory per mode, say whether it fits, and what to change."""

from __future__ import annotations

import click

from ..errors import UsageError
from ..recipe import load_recipe
from . import main


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option(
    "--gpu-memory", metavar="SIZE", help="Memory of the card to fit, e.g. 24GiB, 24GB, 80GiB, 24000MiB."
)
@click.option(
    "--modes", default="full,lora,qlora", show_default=True, help="Comma-separated modes to estimate."
)
@click.option("--seq-len", type=click.IntRange(min=8), help="Sequence length (default: data.max_seq_length).")
@click.option("--batch", type=click.IntRange(min=1), help="Micro-batch size (default: training.batch_size).")
@click.option("--device", type=click.Choice(["cuda", "cpu"]), help="Plan for a GPU (default) or a CPU.")
@click.option(
    "--num-gpus", type=click.IntRange(min=1), default=1, show_default=True, help="GPUs sharing the job."
)
@click.option(
    "--strategy",
    type=click.Choice(["ddp", "fsdp", "deepspeed"]),
    help="How --num-gpus share it (default: the recipe's distributed.strategy).",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a recipe value.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(
    recipe: str,
    gpu_memory: str | None,
    modes: str,
    seq_len: int | None,
    batch: int | None,
    device: str | None,
    num_gpus: int,
    strategy: str | None,
    overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Predict peak training memory term by term for full / LoRA / QLoRA and rank what would make it fit
    (per GPU with --num-gpus N: sharded parameters, gradients and optimizer state divided by N)."""
    from ..planner import MODES, parse_size, render
    from ..planner import plan as make_plan

    budget = parse_size(gpu_memory) if gpu_memory is not None else None
    chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
    unknown = [m for m in chosen if m not in MODES]
    if unknown or not chosen:
        raise UsageError(
            f"unknown mode(s) {unknown or modes!r} in --modes", hint=f"choose from {','.join(MODES)}"
        )
    if strategy is not None:  # validated like any override (FSDP + int8 is refused, for one)
        overrides = (*overrides, f"distributed.strategy={strategy}")
    r = load_recipe(recipe, overrides)
    if num_gpus > 1 and device == "cpu":
        raise UsageError("--num-gpus plans GPUs; drop --device cpu", hint="e.g. --num-gpus 2 --strategy fsdp")
    report = make_plan(
        r,
        gpu_memory_bytes=budget,
        modes=chosen,
        seq_len=seq_len,
        micro_batch=batch,
        device=device,
        num_gpus=num_gpus,
    )
    click.echo(report.to_json() if as_json else render(report))
