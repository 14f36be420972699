"""`lora-adapt run` and `lora-adapt data preview`."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UsageError
from ..recipe import load_recipe
from . import main

SET_HELP = "Override a recipe value, e.g. --set training.learning_rate=1e-4 (repeatable)."


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help=SET_HELP)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Parent folder of the run (default: output.dir).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run from its newest complete checkpoint (the recipe may change only in "
    "what does not affect training).",
)
@click.option(
    "--resume-unchecked",
    is_flag=True,
    help="--resume an interrupted run whose checkpoints have no record of their recipe (run_start.json), "
    "which --resume refuses: this recipe is used unchecked, and the run records that.",
)
@click.option(
    "--dry-run", is_flag=True, help="Load the model and data, report what would happen, write nothing."
)
@click.option(
    "--overwrite",
    is_flag=True,
    default=None,
    help="Replace a finished run of the same name, or discard an interrupted one.",
)
@click.option(
    "--num-processes",
    type=click.IntRange(min=1),
    help="Run on N processes started by accelerate (one per GPU; on a CPU, N processes over gloo); "
    "distributed.strategy says how they share the work.",
)
@click.pass_context
def run(
    ctx: click.Context,
    recipe: str,
    overrides: tuple[str, ...],
    output_dir: Path | None,
    resume: bool,
    resume_unchecked: bool,
    dry_run: bool,
    overwrite: bool | None,
    num_processes: int | None,
) -> None:
    """Train an adapter from RECIPE and write the run directory."""
    r = load_recipe(recipe, overrides)
    if output_dir is not None:  # the same as --set output.dir=..., resolved against the working directory
        r = r.model_copy(update={"output": r.output.model_copy(update={"dir": output_dir.resolve()})})
    if num_processes is not None and num_processes > 1:
        flags = {"--resume": resume, "--resume-unchecked": resume_unchecked, "--dry-run": dry_run}
        args = _worker_args(recipe, overrides, output_dir, {**flags, "--overwrite": bool(overwrite)})
        ctx.exit(_launch(r, args, num_processes, debug=bool(ctx.obj and ctx.obj.get("debug"))))
    from ..pipeline import run as run_pipeline

    result = run_pipeline(
        r,
        resume=resume,
        resume_unchecked=resume_unchecked,
        dry_run=dry_run,
        overwrite=overwrite,
        echo=click.echo,
    )
    summary = _summary(result.metrics)
    if result.run_dir is not None and summary:
        click.echo(summary)


def _launch(r, worker_args: list[str], num_processes: int, *, debug: bool) -> int:
    """Check the launch once here (not N times in the workers), then start the processes."""
    from ..distributed import check_launch
    from ..launcher import launch
    from ..runtime import resolve_runtime

    runtime = resolve_runtime(r)
    check_launch(
        r,
        device=runtime.device,
        world_size=num_processes,
        dtype=runtime.dtype,
        precision=runtime.precision.name,
    )
    return launch(worker_args, num_processes, debug=debug)


def _worker_args(
    recipe: str, overrides: tuple[str, ...], output_dir: Path | None, flags: dict[str, bool]
) -> list[str]:
    """The `run` command line each process gets (everything but --num-processes); ``flags``: each flag
    with whether it was given."""
    args = ["run", recipe, *(f"--set={o}" for o in overrides)]
    if output_dir is not None:
        args += ["--output-dir", str(output_dir.resolve())]
    return args + [flag for flag, on in flags.items() if on]


def _summary(metrics: dict) -> str:
    lines = []
    for split in ("validation", "test"):
        m = metrics.get(split) or {}
        if "before" in m and "after" in m and m["before"] and m["after"]:
            lines.append(
                f"{split}: loss {m['before']['loss']:.4f} -> {m['after']['loss']:.4f}, "
                f"perplexity {m['before']['perplexity']:.2f} -> {m['after']['perplexity']:.2f}"
            )
    if "summary" in metrics:
        lines.append(metrics["summary"])
    return "\n".join(lines + health_warnings(metrics))


def health_warnings(metrics: dict) -> list[str]:
    """The health verdict's warnings (a collapse, a loss to a baseline) repeated as the last lines, so a run
    that finished with exit 0 cannot end on a line that reads like success."""
    health = metrics.get("health") or {}
    return [f"WARNING: {w}" for w in health.get("warnings", [])]


@main.group()
def data() -> None:
    """Inspect prepared training data."""


@data.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("-n", "count", default=3, show_default=True, help="How many examples to show.")
@click.option(
    "--split", type=click.Choice(["train", "validation", "test"]), default="train", show_default=True
)
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help=SET_HELP)
def preview(recipe: str, count: int, split: str, overrides: tuple[str, ...]) -> None:
    """Render prepared examples, marking trained and masked tokens."""
    from ..data import render_preview
    from ..runtime import recipe_data, recipe_tokenizer

    r = load_recipe(recipe, overrides)
    tokenizer = recipe_tokenizer(r)
    prepared = recipe_data(r, tokenizer)
    click.echo(render_preview(prepared, tokenizer, n=count, split=split))


@data.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help=SET_HELP)
def prepare(recipe: str, overrides: tuple[str, ...]) -> None:
    """Prepare the recipe's data into the cache ahead of time (runs, --resume, sweeps and eval reuse it)."""
    from ..runtime import data_line, recipe_data, recipe_tokenizer

    r = load_recipe(recipe, overrides)
    if not r.data.cache:
        raise UsageError("data.cache is false: nothing would be kept", hint="set data.cache: true")
    prepared = recipe_data(r, recipe_tokenizer(r), echo=click.echo)
    click.echo(data_line(prepared))
