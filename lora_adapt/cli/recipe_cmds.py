"""`lora-adapt validate` and `lora-adapt schema`: recipe tools that never import torch."""

from __future__ import annotations

import json

import click

from ..recipe import load_recipe, recipe_json_schema
from . import main


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a recipe value.")
@click.option(
    "--sweep",
    "sweep_file",
    type=click.Path(dir_okay=False),
    help="A YAML file with the `sweep` section, as `lora-adapt sweep --sweep FILE` reads it.",
)
def validate(recipe: str, overrides: tuple[str, ...], sweep_file: str | None) -> None:
    """Check a recipe (and overrides) without loading any model."""
    from ..distributed import missing_packages

    r = load_recipe(recipe, overrides, sweep_file=sweep_file)
    click.echo(
        f"ok: {recipe} is a valid recipe (name={r.name}, task={r.task.type}, model={r.model.name_or_path}, "
        f"quantization={r.quantization.method}, adapter={r.adapter.method} r={r.adapter.rank})"
    )
    for name in missing_packages(r):
        click.echo(
            f"note: distributed.strategy '{r.distributed.strategy}' needs the {name} package, which is not "
            "installed here (a run on several processes on this machine would be refused)"
        )
    if r.sweep is not None:
        s, size = r.sweep, r.sweep.grid_size()
        click.echo(
            f"sweep: {s.method} over {', '.join(s.space)}"
            + (f" ({size} grid points)" if s.method == "grid" else "")
            + f"; budget {s.budget.trials or 'unlimited'} trials"
            + (f", {s.budget.minutes:g} min" if s.budget.minutes else "")
            + f"; pruning {s.pruning.method}; run it with `lora-adapt sweep {recipe}"
            + (f" --sweep {sweep_file}`" if sweep_file else "`")
        )


@main.command()
def schema() -> None:
    """Print the recipe's JSON Schema (for editor completion and checking)."""
    click.echo(json.dumps(recipe_json_schema(), indent=2))
