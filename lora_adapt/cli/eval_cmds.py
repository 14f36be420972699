"""`lora-adapt eval RUN_DIR`: score a finished run's adapter on new data or on one of its splits.

The run directory is not written to (its file set is a contract): the comparison table is printed,
and the metrics go to ``--out FILE`` as JSON when asked. The work is ``lora_adapt.rescore.evaluate_run``.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..recipe.derived import BASELINES
from . import main
from .run_cmds import health_warnings


@main.command("eval")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--data",
    "data_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Score this file (same format and columns as the training data) instead of a split.",
)
@click.option(
    "--split",
    type=click.Choice(["train", "validation", "test"]),
    default="test",
    show_default=True,
    help="Score this split of the run's recipe data (ignored with --data).",
)
@click.option(
    "--baseline",
    "baselines",
    multiple=True,
    type=click.Choice(BASELINES),
    help="Also score a baseline (repeatable); trained on the recipe's training split.",
)
@click.option("--max-samples", type=int, default=None, help="Score a seeded sample of at most N rows.")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the metrics as JSON here."
)
def eval_command(
    run_dir: Path,
    data_file: Path | None,
    split: str,
    baselines: tuple[str, ...],
    max_samples: int | None,
    out: Path | None,
) -> None:
    """Score the adapter of RUN_DIR on --data FILE or on --split of its recipe's data."""
    from .. import artifacts as A
    from ..rescore import evaluate_run

    result = evaluate_run(
        run_dir,
        data_file=data_file,
        split=split,
        baselines=baselines,
        max_samples=max_samples,
        echo=click.echo,
    )
    click.echo(result["summary"])
    for line in health_warnings(result):
        click.echo(line)
    if out is not None:
        A.atomic_write_json(out, result)
        click.echo(f"metrics written to {out}")
