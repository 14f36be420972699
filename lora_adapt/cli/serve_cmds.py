"""`lora-adapt serve`: many adapters on one base behind an OpenAI-compatible API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from . import main
from .domain_cmds import base_options, build_spec, load_kwargs

FALLBACK_HELP = (
    "Who answers an uncertain 'auto' request: an adapter NAME, 'base' (the base model: only for routers "
    "with generative (sft) domains, as it never answers /v1/classify) or 'none' (the top domain answers, "
    "marked uncertain)"
)


def named_sources(values: tuple[str, ...]) -> dict[str, str]:
    """NAME=SOURCE pairs (a bare SOURCE is named after its folder)."""
    from .domain_cmds import adapter_name

    out: dict[str, str] = {}
    for value in values:
        name, sep, source = value.partition("=")
        if not sep:
            name, source = adapter_name(value), value
        if not name or not source:
            raise UsageError(
                f"--adapter {value!r}: expected NAME=SOURCE", hint="e.g. --adapter support=runs/quickstart"
            )
        if name in out:
            raise UsageError(
                f"--adapter: the name {name!r} is given twice", hint="give each adapter its own name"
            )
        out[name] = source
    return out


@main.command()
@click.option(
    "--adapter",
    "adapters",
    multiple=True,
    help="NAME=SOURCE: a run directory, adapter folder or hub:ORG/NAME@REV (repeatable).",
)
@click.option(
    "--router",
    type=click.Path(file_okay=False, path_type=Path),
    help="A router run (`lora-adapt route build`): enables model 'auto'.",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Router confidence below which 'auto' answers with the fallback [the router's].",
)
@click.option("--fallback", default=None, help=FALLBACK_HELP + " [the router's].")
@click.option("--host", default=None, help="Address to bind [127.0.0.1: this machine only].")
@click.option("--port", type=int, default=None, help="Port [8000; 0 = any free port].")
@click.option(
    "--api-key",
    envvar="LORA_ADAPT_API_KEY",
    default=None,
    help="Require Authorization: Bearer KEY (env LORA_ADAPT_API_KEY).",
)
@click.option("--max-batch-size", type=int, default=None, help="Most rows per forward, across adapters [16].")
@click.option(
    "--max-wait-ms", type=float, default=None, help="How long a request waits for others to batch with [10]."
)
@click.option("--max-tokens", type=int, default=None, help="Most new tokens a request may ask for [512].")
@click.option("--max-prompt-tokens", type=int, default=None, help="Longest prompt or text accepted [2048].")
@click.option("--max-concurrent", type=int, default=None, help="Requests in flight before 429 [64].")
@click.option(
    "--timeout", "timeout_s", type=float, default=None, help="Seconds before a request gets 504 [120]."
)
@click.option("--no-admin", is_flag=True, help="Do not expose adapter loading/unloading endpoints.")
@base_options
def serve(
    adapters: tuple[str, ...],
    router: Path | None,
    threshold: float | None,
    fallback: str | None,
    no_admin: bool,
    **options: Any,
) -> None:
    """Serve adapters on one base: OpenAI-compatible /v1/completions, /v1/chat/completions (streaming),
    /v1/models, plus /v1/classify for task adapters, admin load/unload and /health."""
    from ..domains.adapter_set import AdapterSet
    from ..domains.router import check_router, load_router
    from ..domains.tasks import task_kind
    from ..modeling.adapted import resolve_adapter
    from ..quiet import quiet_libraries
    from ..recipe.serving import ServeSpec
    from ..serve import serve_forever

    keys = (
        "host",
        "port",
        "api_key",
        "max_batch_size",
        "max_wait_ms",
        "max_tokens",
        "max_prompt_tokens",
        "max_concurrent",
        "timeout_s",
    )
    settings = build_spec(
        ServeSpec, "server settings", allow_admin=not no_admin, **{k: options.get(k) for k in keys}
    )
    if settings.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        click.echo(
            f"warning: serving on {settings.host} without --api-key: anyone who can reach it can use it",
            err=True,
        )
    sources = named_sources(adapters)
    if not sources and not options.get("base"):
        raise UsageError("nothing to serve", hint="give --adapter NAME=SOURCE (and/or --base MODEL)")
    infos = {name: resolve_adapter(source, name=name) for name, source in sources.items()}
    if router is not None:  # all that can be checked before the base is loaded
        check_router(
            router, {n: task_kind(i).name for n, i in infos.items()}, threshold=threshold, fallback=fallback
        )
    quiet_libraries()
    aset = AdapterSet.load(infos, echo=lambda line: click.echo(line, err=True), **load_kwargs(options))
    routing = None
    if router is not None:
        routing = load_router(router, aset, threshold=threshold, fallback=fallback)
    serve_forever(aset, settings, routing, echo=lambda line: click.echo(line, err=True))
