"""The `lora-adapt` command: a click group and the single error boundary.

Commands live in one module per area (run, data, eval, export, hub, plan); each registers its
commands on :data:`main`. Heavy imports (torch, transformers) happen inside command bodies so
`lora-adapt validate` and `--help` stay fast."""

from __future__ import annotations

import os
import sys
import traceback

import click

from ..errors import LoraAdaptError
from ..quiet import quiet_warnings

RESUMABLE = {
    "run": "the unfinished run is left as <name>.incomplete; rerun with --resume",
    "sweep": "finished trials are kept in the sweep folder; rerun the same `lora-adapt sweep` to resume "
    "(the interrupted trial is queued again)",
}
"""The commands whose interrupted work a later invocation resumes, and how (the interruption message)."""


class Group(click.Group):
    """Turns LoraAdaptError into one message and a hint; exit 2 for recipe/usage, 1 for runtime."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LoraAdaptError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            if not exc.reported_elsewhere:  # another process of a distributed run prints it
                click.echo(f"error: {exc.message}", err=True)
                if exc.hint:
                    click.echo(f"hint: {exc.hint}", err=True)
            _leave(ctx, exc.exit_code)
        except KeyboardInterrupt:
            resumes = RESUMABLE.get(ctx.invoked_subcommand or "")
            click.echo("interrupted" + (f": {resumes}" if resumes else ""), err=True)
            ctx.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # an unexpected failure: one line unless --debug
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
            click.echo("hint: rerun with --debug for the full traceback", err=True)
            _leave(ctx, 1)


def _leave(ctx: click.Context, code: int) -> None:
    """Exit with ``code``. A failing process of a distributed run leaves at once, its output flushed
    (``os._exit``): with a collective of another process still pending on it, the threads of torch's
    process groups and key-value store abort the interpreter's normal shutdown ("terminate called without
    an active exception", SIGABRT), and the run's exit code became -6 instead of its error's."""
    dist = sys.modules.get("torch.distributed")  # never imported here: only a process that joined has it
    if dist is not None and dist.is_available() and dist.is_initialized():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    ctx.exit(code)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, envvar="LORA_ADAPT_DEBUG", help="Show full tracebacks.")
@click.version_option(package_name="lora-adapt")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Adapt a language model to your domain with LoRA / QLoRA from one YAML recipe."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not debug:
        quiet_warnings()


def _register() -> None:
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


_register()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
