"""`lora-adapt explain SOURCE`: which input words drive an adapted head model's prediction (Integrated
Gradients, Captum), written as a self-contained HTML page, a PNG per explanation and attributions.json.
The work is ``lora_adapt.explain.explain_source``."""

from __future__ import annotations

from pathlib import Path

import click

from . import main


@main.command("explain")
@click.argument("source")
@click.option("--text", "texts", multiple=True, help="A text to explain (repeatable).")
@click.option(
    "--text-b", "texts_b", multiple=True, help="Sentence-pair adapters: the second text of each --text."
)
@click.option(
    "--input",
    "input_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Texts to explain: .jsonl/.csv/.tsv with a `text` (and `text_b`) column, or .txt with one per line.",
)
@click.option(
    "--target",
    help="The class (or regression target) to explain. Default: the predicted class / every target.",
)
@click.option(
    "--steps",
    type=click.IntRange(4, 1024),
    default=50,
    show_default=True,
    help="Integrated Gradients steps to start with.",
)
@click.option(
    "--max-steps",
    type=click.IntRange(4, 4096),
    default=512,
    show_default=True,
    help="Steps are doubled up to this until the attributions sum to the output gap within --tolerance.",
)
@click.option(
    "--tolerance",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.05,
    show_default=True,
    help="Largest convergence delta accepted, as a fraction of |output - baseline output|.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("explanation"),
    show_default=True,
    help="Folder for explanation.html, explanation-NNN.png and attributions.json.",
)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def explain_command(
    source: str,
    texts: tuple[str, ...],
    texts_b: tuple[str, ...],
    input_file: Path | None,
    target: str | None,
    steps: int,
    max_steps: int,
    tolerance: float,
    out: Path,
    overwrite: bool,
) -> None:
    """Attribute the prediction of the adapter at SOURCE (a run directory, an adapter folder or
    hub:ORG/NAME[@REV]) to the words of each input."""
    from ..errors import UsageError
    from ..explain import explain_source
    from ..quiet import quiet_libraries

    if bool(texts) == (input_file is not None):
        raise UsageError("give the texts with --text (repeatable) or --input FILE, not both and not neither")
    if texts_b and len(texts_b) != len(texts):
        raise UsageError(f"{len(texts)} --text but {len(texts_b)} --text-b; give one --text-b per --text")
    if input_file is not None:
        inputs = _read_inputs(input_file)
    else:
        inputs = list(zip(texts, texts_b or [None] * len(texts), strict=True))
    if max_steps < steps:
        raise UsageError(f"--max-steps {max_steps} is below --steps {steps}; make it at least --steps")
    quiet_libraries()
    explanations = explain_source(
        source,
        inputs,
        out_dir=out,
        target=target,
        steps=steps,
        max_steps=max_steps,
        tolerance=tolerance,
        overwrite=overwrite,
        echo=click.echo,
    )
    for e in explanations:
        top = sorted(e.words, key=lambda w: -abs(w.score))[:5]
        click.echo(
            f"{e.target} (prediction {e.prediction}): "
            + ", ".join(f"{w.text} {w.score:+.3f}" for w in top)
            + f"  [delta {e.delta:.1e}, {e.steps} steps]"
        )
        if not e.converged:
            click.echo(
                f"warning: not converged within {e.steps} steps: the attributions sum to "
                f"{sum(w.score for w in e.words):+.3f} of an output gap of "
                f"{e.score - e.baseline_score:+.3f}, so they are unreliable; raise --max-steps",
                err=True,
            )
    click.echo(f"wrote {out}/explanation.html and {len(explanations)} PNG(s)")


def _read_inputs(path: Path) -> list[tuple[str, str | None]]:
    from ..data.sources import check_exists, detect_file_format, read_file
    from ..errors import UsageError

    check_exists(path, "--input")
    rows = read_file(path, detect_file_format(path, "classification"))
    if not rows:
        raise UsageError(f"{path} holds no texts")
    column = "text" if "text" in rows[0] else "text_a"
    missing = [r.get("_where", str(path)) for r in rows if column not in r]
    if missing:
        raise UsageError(
            f"{missing[0]}: no `text` column", hint="name the column `text` (and `text_b` for pairs)"
        )
    return [(str(r[column]), str(r["text_b"]) if "text_b" in r else None) for r in rows]
