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
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a recipe value.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(
    recipe: str,
    gpu_memory: str | None,
    modes: str,
    seq_len: int | None,
    batch: int | None,
    device: str | None,
    overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Predict peak training memory term by term for full / LoRA / QLoRA and rank what would make it fit."""
    from ..planner import MODES, parse_size, render
    from ..planner import plan as make_plan

    budget = parse_size(gpu_memory) if gpu_memory is not None else None
    chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
    unknown = [m for m in chosen if m not in MODES]
    if unknown or not chosen:
        raise UsageError(
            f"unknown mode(s) {unknown or modes!r} in --modes", hint=f"choose from {','.join(MODES)}"
        )
    r = load_recipe(recipe, overrides)
    report = make_plan(
        r, gpu_memory_bytes=budget, modes=chosen, seq_len=seq_len, micro_batch=batch, device=device
    )
    click.echo(report.to_json() if as_json else render(report))
