"""`lora-adapt compose`, `lora-adapt eval-matrix` and `lora-adapt route build`: combine adapters, score them
across domains, and train the router that picks one per request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..domains.compose import METHODS  # torch-free: --help stays light
from ..errors import UsageError
from . import main
from .domain_cmds import base_options, load_kwargs
from .serve_cmds import FALLBACK_HELP, named_sources


def parse_weights(values: tuple[str, ...]) -> list[float] | None:
    """--weights 0.7,0.3 or --weights 0.7 --weights 0.3."""
    parts = [p for v in values for p in v.split(",") if p.strip()]
    try:
        return [float(p) for p in parts] or None
    except ValueError:
        raise UsageError(
            f"--weights {', '.join(values)}: not numbers", hint="e.g. --weights 0.7,0.3"
        ) from None


@main.command()
@click.argument("sources", nargs=-1, required=True)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="linear",
    show_default=True,
    help="PEFT add_weighted_adapter combination.",
)
@click.option("--weights", multiple=True, help="One weight per adapter, comma-separated or repeated [equal].")
@click.option(
    "--density", type=float, default=None, help="Fraction of weights kept (ties, dare_ties, dare_linear)."
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The run directory to write.",
)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def compose(
    sources: tuple[str, ...],
    method: str,
    weights: tuple[str, ...],
    density: float | None,
    out_dir: Path,
    overwrite: bool,
) -> None:
    """Combine adapters SOURCES (NAME=SOURCE or SOURCE: run dirs, adapter folders, hub:ORG/NAME@REV) into
    one adapter, written as a run directory (method, weights and sources in its manifest)."""
    from ..domains.compose import compose as run_compose
    from ..quiet import quiet_libraries

    quiet_libraries()
    run_compose(
        named_sources(sources),
        out_dir,
        method=method,
        weights=parse_weights(weights),
        density=density,
        overwrite=overwrite,
        echo=click.echo,
    )


@main.command("eval-matrix")
@click.argument("sources", nargs=-1, required=True)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for matrix.json/.md/.png.",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    default=None,
    help="Score a seeded sample of at most N test rows per domain (the rows `eval --max-samples N` scores).",
)
@base_options
def eval_matrix(sources: tuple[str, ...], out_dir: Path, max_rows: int | None, **options: Any) -> None:
    """Score every adapter of SOURCES (runs, compositions) and the base on every source domain's test split."""
    from ..domains.matrix import eval_matrix as run_matrix
    from ..domains.matrix import render
    from ..quiet import quiet_libraries

    quiet_libraries()
    result = run_matrix(
        named_sources(sources), out_dir, max_rows=max_rows, echo=click.echo, **load_kwargs(options)
    )
    click.echo(render(result))
    click.echo(f"written to {out_dir}/matrix.json, matrix.md, matrix.png")


@main.group()
def route() -> None:
    """Route requests to adapters by their text (`serve --router`, model 'auto')."""


@route.command("build")
@click.option(
    "--adapter", "adapters", multiple=True, required=True, help="NAME=RUN_DIR (repeatable, two or more)."
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The router's run directory.",
)
@click.option("--base", default=None, help="Base of the LoRA router [the adapters' base].")
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0),
    default=0.5,
    show_default=True,
    help="Below this confidence, answer with --fallback.",
)
@click.option(
    "--fallback",
    default=None,
    help=FALLBACK_HELP + " [base when a domain is an sft adapter, else none].",
)
@click.option("--epochs", type=float, default=2.0, show_default=True)
@click.option(
    "--max-rows-per-domain",
    type=click.IntRange(min=1),
    default=None,
    help="Cap each domain's training texts.",
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def route_build(adapters: tuple[str, ...], out_dir: Path, **options: Any) -> None:
    """Train a domain router from the adapters' own training data; keep the LoRA head, TF-IDF + logistic
    regression or a logistic regression on the frozen base's features, whichever routes its held-out slice
    best."""
    from ..domains.route_build import build_router
    from ..quiet import quiet_libraries

    quiet_libraries()
    config = build_router(named_sources(adapters), out_dir, echo=click.echo, **options)
    scores = ", ".join(f"{k} {v['balanced_accuracy']:.4f}" for k, v in config["held_out"].items())
    click.echo(f"router: {config['chosen']} (held-out balanced accuracy: {scores})")
    for name, score in config["test_accuracy"].items():
        if score:
            click.echo(f"  {name}: {score['accuracy']:.4f} of {score['rows']} test rows routed right")
    click.echo(f"router written to {out_dir}")
