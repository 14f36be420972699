"""`lora-adapt sweep`: a hyperparameter search over the recipe's `sweep` section."""

from __future__ import annotations

from pathlib import Path

import click

from ..recipe import load_recipe
from . import main
from .run_cmds import SET_HELP


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help=SET_HELP)
@click.option(
    "--sweep",
    "sweep_file",
    type=click.Path(dir_okay=False),
    help="A YAML file with the `sweep` section (replacing the recipe's), to search a recipe left as it is.",
)
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="The sweep folder (default: sweep.dir, else <output.dir>/<name>-sweep). An existing sweep resumes.",
)
@click.option(
    "--trials", type=click.IntRange(min=1), help="Trial budget (the same as --set sweep.budget.trials=N)."
)
@click.option(
    "--minutes", type=click.FloatRange(min=0, min_open=True), help="Wall-time budget of this process."
)
@click.option(
    "--num-processes",
    type=click.IntRange(min=1),
    default=None,
    hidden=True,  # accepted only to refuse it clearly: each trial trains in one process
)
def sweep(
    recipe: str,
    overrides: tuple[str, ...],
    sweep_file: str | None,
    folder: Path | None,
    trials: int | None,
    minutes: float | None,
    num_processes: int | None,
) -> None:
    """Search the recipe's `sweep.space` (grid, random or bayes); resumes an interrupted sweep.

    Trials are scored on the validation split; the best trial's test split is scored once at the end.
    Two processes given the same recipe (or --dir) share the study and its budget; each trains its
    trials in one process (no --num-processes, no torchrun / accelerate launch)."""
    from ..sweep import refuse_distributed, run_sweep

    refuse_distributed(num_processes)
    budget = [
        f"sweep.budget.{key}={value}" for key, value in (("trials", trials), ("minutes", minutes)) if value
    ]
    r = load_recipe(recipe, (*overrides, *budget), sweep_file=sweep_file)
    if (
        r.sweep is not None and folder is not None
    ):  # resolved against the working directory, like --output-dir
        r = r.model_copy(update={"sweep": r.sweep.model_copy(update={"dir": folder.resolve()})})
    result = run_sweep(r, echo=click.echo)
    click.echo(f"sweep written: {result.folder}")
