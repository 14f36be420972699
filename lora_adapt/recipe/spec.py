"""The base of every recipe section and the literals several sections share (their own module so
that section modules can share them without importing the whole schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

FileFormat = Literal[
    "auto", "jsonl", "json", "csv", "tsv", "parquet", "text", "conll", "semeval", "hf_dataset"
]
"""How a data file is read (shared by `data` and `data.sources`)."""


class Spec(BaseModel):
    """Base for every section: unknown keys are errors and values are frozen once built."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_default=True,
        use_attribute_docstrings=True,
        allow_inf_nan=False,  # `.inf` / `.nan` are errors at validate, never a learning rate or epoch count
    )
