"""`lora-adapt push` and `lora-adapt pull`: publish a run to the Hugging Face Hub, fetch an adapter back.

The token comes from HF_TOKEN or `hf auth login`; there is deliberately no --token option (it would
end up in shell history and process lists)."""

from __future__ import annotations

from pathlib import Path

import click

from . import main

ENDPOINT_HELP = "Hub endpoint (default: HF_ENDPOINT, else https://huggingface.co)."
TIMEOUT_HELP = "Seconds to wait for the Hub to connect and to answer each read or write."
RETRIES_HELP = "Retries (with backoff) of Hub calls that are safe to repeat."


def network_options(command):
    """``--timeout`` and ``--retries``, with the recipe's defaults (output.publish.timeout / retries)."""
    from ..recipe.schema import PublishSpec

    fields = PublishSpec.model_fields
    command = click.option(
        "--retries",
        type=click.IntRange(0, 10),
        default=fields["retries"].default,
        show_default=True,
        help=RETRIES_HELP,
    )(command)
    return click.option(
        "--timeout",
        type=click.FloatRange(0, 3600, min_open=True),
        default=fields["timeout"].default,
        show_default=True,
        help=TIMEOUT_HELP,
    )(command)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--repo-id", required=True, metavar="NAMESPACE/NAME", help="Hub repository (created if missing)."
)
@click.option(
    "--private/--public",
    default=True,
    show_default=True,
    help="Visibility of a new repository; --private also refuses to push into an existing public one.",
)
@click.option(
    "--revision",
    default=None,
    metavar="BRANCH",
    help="Branch to push to (created if missing). Default: main.",
)
@click.option("--merged", is_flag=True, help="Push the merged model (RUN_DIR/merged) instead of the adapter.")
@click.option("--endpoint", default=None, metavar="URL", help=ENDPOINT_HELP)
@network_options
def push(
    run_dir: Path,
    repo_id: str,
    private: bool,
    revision: str | None,
    merged: bool,
    endpoint: str | None,
    timeout: float,
    retries: int,
) -> None:
    """Publish a finished run: adapter (or merged model), model card, metrics and recipe."""
    from ..hub import push_run
    from ..hub.network import HubNetwork

    result = push_run(
        run_dir,
        repo_id,
        private=private,
        revision=revision,
        merged=merged,
        endpoint=endpoint,
        network=HubNetwork(timeout, retries),
    )
    click.echo(f"pushed {'merged model' if merged else 'adapter'} of {run_dir} as {result.user}")
    click.echo(f"url: {result.url}")
    click.echo(f"commit: {result.commit_sha} ({result.commit_url})")


@main.command()
@click.argument("repo_id", metavar="NAMESPACE/NAME[@REVISION]")
@click.option("--revision", default=None, metavar="REV", help="Branch, tag or commit sha (default: main).")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to write the files to (default: the Hugging Face cache).",
)
@click.option("--endpoint", default=None, metavar="URL", help=ENDPOINT_HELP)
@network_options
def pull(
    repo_id: str, revision: str | None, out: Path | None, endpoint: str | None, timeout: float, retries: int
) -> None:
    """Download an adapter from the Hub, pinned to a revision; prints its local folder."""
    from ..errors import UsageError
    from ..hub import fetch_adapter
    from ..hub.network import HubNetwork

    repo_id = repo_id.removeprefix("hub:")
    if "@" in repo_id:
        repo_id, _, at = repo_id.partition("@")
        if revision and revision != at:
            raise UsageError(f"two revisions given: @{at} and --revision {revision}", hint="give only one")
        revision = at
    result = fetch_adapter(
        repo_id, revision=revision, dest=out, endpoint=endpoint, network=HubNetwork(timeout, retries)
    )
    click.echo(f"pulled {result.repo_id}@{result.revision} (commit {result.commit_sha})")
    click.echo(str(result.path))
