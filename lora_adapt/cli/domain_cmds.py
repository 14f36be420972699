"""`lora-adapt predict`: run an adapter on new inputs; the options shared by the commands that load
adapters on one base (predict, serve, compose, eval-matrix, route)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from . import main

QUANTIZATION = ("as-trained", "none", "nf4", "fp4", "int8")


def base_options(fn: Callable) -> Callable:
    """--base / --quantization / --device / --dtype: how the shared base is loaded."""
    for option in reversed(
        [
            click.option(
                "--base",
                help="The base model (folder or Hub id); default: the one the adapters record (checked).",
            ),
            click.option(
                "--quantization",
                type=click.Choice(QUANTIZATION),
                default="as-trained",
                show_default=True,
                help="Load the base quantized (nf4/fp4/int8) or not (none), or as the first adapter was trained.",
            ),
            click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default=None),
            click.option("--dtype", type=click.Choice(["auto", "bf16", "fp16", "fp32"]), default=None),
        ]
    ):
        fn = option(fn)
    return fn


def generation_options(fn: Callable) -> Callable:
    """Generation settings of sft adapters (defaults: GenerationSpec in recipe/serving.py)."""
    for option in reversed(
        [
            click.option(
                "--max-new-tokens", type=int, default=None, help="Most new tokens per answer [256]."
            ),
            click.option(
                "--temperature", type=float, default=None, help="0 = greedy (default); > 0 samples."
            ),
            click.option("--top-p", type=float, default=None, help="Nucleus sampling mass [1.0]."),
            click.option(
                "--top-k", type=int, default=None, help="Sample among the k likeliest tokens [0 = all]."
            ),
            click.option(
                "--repetition-penalty", type=float, default=None, help="> 1 discourages repeats [1.0]."
            ),
            click.option("--stop", multiple=True, help="A string that ends an answer (repeatable)."),
            click.option("--seed", type=int, default=None, help="Seed for sampling."),
        ]
    ):
        fn = option(fn)
    return fn


def build_spec(cls, what: str, **values: Any):
    """A settings object from command-line values (None = the default); invalid values are usage errors."""
    from pydantic import ValidationError

    try:
        return cls(**{k: v for k, v in values.items() if v is not None and v != ()})
    except ValidationError as exc:
        problems = "; ".join(
            f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in exc.errors() if e.get("loc")
        )
        raise UsageError(f"invalid {what}: {problems}", hint="see --help for the allowed values") from None


GENERATION_KEYS = ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "stop", "seed")
"""The options of :func:`generation_options` (GenerationSpec's fields)."""


def generation_spec(options: dict[str, Any]):
    from ..recipe.serving import GenerationSpec

    return build_spec(GenerationSpec, "generation settings", **{k: options.get(k) for k in GENERATION_KEYS})


def check_generation_options(kind, name: str, options: dict[str, Any]) -> None:
    """Refuse generation options the adapter would ignore: every one for a head adapter (it does not
    generate), --max-new-tokens for a generative task adapter (it answers within its evaluation budget)."""
    given = [k for k in GENERATION_KEYS if options.get(k) not in (None, ())]
    if kind.head and given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise UsageError(
            f"{flags}: {name!r} is a head adapter ({kind.name}): it answers from its classifier head and "
            "does not generate, so generation options would be ignored",
            hint=f"drop {flags}; they are for adapters that generate (sft, generative task adapters)",
        )
    if not kind.head and kind.name != "generation" and "max_new_tokens" in given:
        raise UsageError(
            f"--max-new-tokens: {name!r} is a generative {kind.name} adapter: it answers within the budget "
            "it was evaluated with (its recipe's evaluation.max_new_tokens), so --max-new-tokens would be "
            "ignored",
            hint="drop --max-new-tokens (the sampling options apply)",
        )


def check_top_labels(kind, name: str, top_labels: int | None) -> None:
    """Refuse --top-labels for an adapter that gives no label probabilities (it would be ignored)."""
    if top_labels is None or kind.ranks_labels:
        return
    raise UsageError(
        f"--top-labels: {name!r} is a {kind.name} adapter: it gives no label probabilities, so "
        "--top-labels would be ignored",
        hint="drop --top-labels; it is for classifier and relation heads (single- and multi-label), the "
        "generation options are for adapters that generate",
    )


def load_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """AdapterSet.load keywords from base_options values."""
    from ..recipe.schema import QuantizationSpec

    out: dict[str, Any] = {"base": options.get("base")}
    method = options.get("quantization") or "as-trained"
    if method != "as-trained":
        out["quantization"] = QuantizationSpec(method=method)
    for key in ("device", "dtype"):
        if options.get(key):
            out[key] = options[key]
    return out


def adapter_name(source: str) -> str:
    """A name for a lone adapter: its run's (or folder's) name when it can name an adapter."""
    from ..domains.adapter_set import NAME, RESERVED

    stem = Path(source.split("@", 1)[0]).name or "adapter"
    return stem if NAME.match(stem) and stem not in RESERVED else "adapter"


@main.command()
@click.argument("source")
@click.option(
    "--input",
    "input_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Inputs (jsonl, json, csv, ...).",
)
@click.option("--text", "texts", multiple=True, help="An input text (repeatable); instead of --input.")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write JSON lines here (default: stdout)."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option(
    "--top-labels",
    type=click.IntRange(min=0),
    default=None,
    help="Label probabilities per input, for classifier and relation heads (0 = all) [5].",
)
@base_options
@generation_options
def predict(
    source: str, input_file: Path | None, texts: tuple[str, ...], out: Path | None, **options: Any
) -> None:
    """Run the adapter SOURCE (a run directory, an adapter folder or hub:ORG/NAME@REV) on new inputs.

    sft adapters generate (chats through the adapter's chat template); classifier heads give labels with
    probabilities; taggers give entity spans; regression gives values in the data's units; extraction gives
    parsed fields. Sentence-pair adapters read `text` and `text_b` (--input). Each output line is the input
    row plus "prediction"."""
    from ..domains.adapter_set import AdapterSet
    from ..domains.predict import predict_rows, read_inputs, write_jsonl
    from ..domains.tasks import DEFAULT_TOP_K, task_kind
    from ..modeling.adapted import resolve_adapter
    from ..quiet import quiet_libraries

    if (input_file is None) == (not texts):
        raise UsageError(
            "give either --input FILE or --text TEXT", hint="lora-adapt predict RUN --text 'hello'"
        )
    if input_file is not None and not input_file.is_file():
        raise UsageError(f"--input {input_file}: no such file", hint="give the path of a jsonl/json/csv file")
    generation = generation_spec(options)
    quiet_libraries()
    name = adapter_name(source)
    adapter = resolve_adapter(source, name=name)
    kind = task_kind(adapter)
    check_generation_options(kind, name, options)
    check_top_labels(kind, name, options["top_labels"])
    aset = AdapterSet.load({name: adapter}, **load_kwargs(options))
    member = aset[name]
    info = member.info
    assert info is not None  # an adapter, not the base
    click.echo(f"loaded {aset.spec.name_or_path} + {member.kind.name} adapter from {info.folder}", err=True)
    columns = info.run.recipe.data.columns if info.run and info.run.recipe else None
    rows: list[Any] = read_inputs(input_file, columns) if input_file is not None else list(texts)
    results = predict_rows(
        aset,
        name,
        rows,
        generation=generation,
        batch_size=options["batch_size"],
        top_k=DEFAULT_TOP_K if options["top_labels"] is None else options["top_labels"],
        echo=lambda line: click.echo(line, err=True),
    )
    if out is None:
        for row in results:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    count = write_jsonl(out, results)
    click.echo(f"{count} predictions written to {out}", err=True)
