"""One process of a two-process run of ``distributed.Ranks`` (started by tests/test_distributed.py with the
environment a launcher sets). Errors go through the CLI's error boundary (``lora_adapt.cli.Group``), as in
`lora-adapt run`. Usage: python rank_scenarios.py SCENARIO OUTPUT_DIR"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lora_adapt.cli import Group
from lora_adapt.distributed import join
from lora_adapt.errors import DataError
from lora_adapt.recipe import recipe_from_dict


def ranks_for_test():
    recipe = recipe_from_dict({"name": "r", "model": {"name_or_path": "m"}, "data": {"path": "d.jsonl"}})
    return join(recipe, device="cpu", world_size=2, dtype="fp32", precision="fp32", echo=print)


def fail_on(rank: int, ranks, error: Exception) -> None:
    if ranks.rank == rank:
        raise error


def collective_step() -> None:
    import torch
    import torch.distributed as dist

    dist.all_reduce(torch.ones(4))  # what a DDP backward does: blocks until every process joins


@click.group(cls=Group)
def main() -> None:
    """Scenarios."""


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
def main_fails_preparing(out: Path) -> None:
    ranks = ranks_for_test()
    ranks.main_first(
        "loading the model and data", lambda: fail_on(0, ranks, DataError("data.jsonl:3: bad row"))
    )
    click.echo(f"rank {ranks.rank} went on")


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
def rank1_fails_training(out: Path) -> None:
    ranks = ranks_for_test()

    def train() -> None:
        fail_on(1, ranks, RuntimeError("index out of range on rank 1"))
        collective_step()

    ranks.together("training", train)
    click.echo(f"rank {ranks.rank} went on")


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
def rank1_fails_preparing(out: Path) -> None:
    ranks = ranks_for_test()
    ranks.main_first("loading the model and data", lambda: fail_on(1, ranks, ValueError("rank 1 data")))
    click.echo(f"rank {ranks.rank} went on")


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--fail", is_flag=True)
def write_run(out: Path, fail: bool) -> None:
    ranks = ranks_for_test()
    with ranks.staged_dir(out / "run") as stage:
        ranks.together("training", collective_step)
        if ranks.is_main:
            (stage / "manifest.json").write_text("{}")
            if fail:
                raise ValueError("evaluation failed on the main process")
    click.echo(f"rank {ranks.rank} finished")


if __name__ == "__main__":
    sys.exit(main())
