"""`lora-adapt merge` and `lora-adapt export`: merged models and serving-ready adapters from a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..quiet import quiet_libraries
from . import main

RUN_DIR = click.Path(path_type=Path)
OUT = click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write (must not exist unless --overwrite).",
)
OVERWRITE = click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
DTYPE = click.option(
    "--dtype",
    type=click.Choice(["bf16", "fp16", "fp32"]),
    default="bf16",
    show_default=True,
    help="Dtype of the saved merged weights (verification always runs in fp32).",
)


@main.command()
@click.argument("run_dir", type=RUN_DIR)
@OUT
@DTYPE
@click.option(
    "--base",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Unquantized base model folder (default: the one recorded in the run's manifest).",
)
@click.option(
    "--max-logit-diff", type=float, default=None, help="Largest |logit difference| the fp32 merge may show."
)
@click.option("--max-kl", type=float, default=None, help="Largest mean KL the fp32 merge may show.")
@click.option("--max-shard-size", default="5GB", show_default=True, help="Largest safetensors shard.")
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True
)
@OVERWRITE
def merge(
    run_dir: Path,
    out_dir: Path,
    dtype: str,
    base: Path | None,
    max_logit_diff: float | None,
    max_kl: float | None,
    max_shard_size: str,
    device: Any,
    overwrite: bool,
) -> None:
    """Merge RUN_DIR's adapter into its base (reloaded unquantized) and verify the merged model."""
    from ..export import merge as M

    quiet_libraries()
    report = M.merge_run(
        run_dir,
        out_dir,
        dtype=dtype,
        base=base,
        max_shard_size=max_shard_size,
        device=device,
        max_logit_diff=M.DEFAULT_MAX_LOGIT_DIFF if max_logit_diff is None else max_logit_diff,
        max_kl=M.DEFAULT_MAX_KL if max_kl is None else max_kl,
        overwrite=overwrite,
        echo=click.echo,
    )
    for line in M.describe(report):
        click.echo(line)
    click.echo(f"merged model ({dtype}) written to {out_dir}")


@main.command()
@click.argument("run_dir", type=RUN_DIR)
@click.option(
    "--target",
    type=click.Choice(["peft", "vllm", "merged"]),
    required=True,
    help="peft: clean adapter folder; vllm: adapter checked against vLLM/LoRAX rules; merged: merged model.",
)
@OUT
@click.option(
    "--force", is_flag=True, help="Write a vLLM export even when vLLM would refuse or drop parts of it."
)
@click.option(
    "--max-lora-rank",
    type=int,
    default=16,
    show_default=True,
    help="The --max-lora-rank your vLLM server runs with.",
)
@DTYPE
@OVERWRITE
def export(
    run_dir: Path, target: str, out_dir: Path, force: bool, max_lora_rank: int, dtype: str, overwrite: bool
) -> None:
    """Write RUN_DIR's adapter (or merged model) in a form a serving engine loads as trained."""
    from ..export import merge as M
    from ..export.serving import export_run

    quiet_libraries()
    report = export_run(
        run_dir,
        out_dir,
        target=target,
        force=force,
        max_lora_rank=max_lora_rank,
        dtype=dtype,
        overwrite=overwrite,
        echo=click.echo,
    )
    if target == "merged":
        for line in M.describe(report):
            click.echo(line)
    for issue in report.get("issues", []):
        click.echo(f"{issue['severity']}: {issue['message']}\n  fix: {issue['fix']}")
    if report.get("forced"):
        click.echo("warning: written with --force although vLLM would refuse or mis-serve it", err=True)
    if report.get("serve"):
        click.echo(f"serve: {report['serve']}")
    click.echo(f"{target} export written to {out_dir}")
