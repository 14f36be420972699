"""Several training sources in one recipe (`data.sources`), mixed by weights or ratios (`data.mixing`).

No torch here. The mixing itself is ``lora_adapt.data.mixing``; these are its specs.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from .spec import FileFormat, Spec


class SourceSpec(Spec):
    """One training source. Columns and file format default to the `data` section's."""

    path: Path
    """A file (or a folder saved by `datasets`, whose `train` split is used)."""
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    """How the manifest and report name this source. Default: the file name without its extension."""
    weight: float | None = Field(None, gt=0)
    """This source's share of the mixed rows, relative to the other sources' weights (2 and 1: two
    thirds and one third). Give every source a weight, or none."""
    ratio: float | None = Field(None, gt=0, le=1)
    """The share of this source's own rows to keep (a seeded sample): 0.5 keeps half, 1 all of them.
    Used when the sources have no weights (default 1)."""
    file_format: FileFormat | None = None
    columns: dict[str, str] | None = None
    """Map canonical names to this source's column names (default: `data.columns`)."""
    column_names: tuple[str, ...] | None = None
    """Names for a headerless csv/tsv source (default: `data.column_names`)."""

    @model_validator(mode="after")
    def _weight_or_ratio(self) -> SourceSpec:
        if self.weight is not None and self.ratio is not None:
            raise ValueError("give a source either `weight` (its share of the mix) or `ratio`, not both")
        return self

    @property
    def label(self) -> str:
        return self.name or self.path.stem or self.path.name


class MixingSpec(Spec):
    rows: int | None = Field(None, ge=1)
    """Weighted sources: how many training rows the mix has. Null: as many as the weights allow
    without repeating a row (the source with the fewest rows for its weight sets the size). A row is
    never repeated: asking for more rows than a source has is an error."""
    seed: int | None = None
    """Seed of the rows each source contributes. Default: `data.split.seed`."""
    deduplicate: bool = True
    """Drop a row already contributed by an earlier source (sources are read in the listed order;
    rows are compared after the `data.cleaning` normalisation)."""


def source_problems(sources: tuple[SourceSpec, ...], mixing: MixingSpec) -> list[str]:
    """Problems of a `data.sources` list as a whole (each source is checked on its own by pydantic)."""
    problems = []
    if not sources:
        problems.append("data.sources is empty; list at least one source")
    weighted = [s.weight is not None for s in sources]
    if any(weighted) and not all(weighted):
        problems.append(
            "data.sources: give every source a `weight` (shares of the mix) or none of them "
            "(each source then keeps `ratio` of its rows)"
        )
    if mixing.rows is not None and not any(weighted):
        problems.append("data.mixing.rows applies to weighted sources; give the sources weights")
    for attribute, what in ((lambda s: s.label, "name"), (lambda s: str(s.path), "path")):
        seen = [attribute(s) for s in sources]
        twice = sorted({x for x in seen if seen.count(x) > 1})
        if twice:
            problems.append(f"data.sources: the same {what} is listed twice: {', '.join(twice)}")
    return problems
