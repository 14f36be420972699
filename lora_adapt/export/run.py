"""A finished run directory as the export commands read it, and the staged output they write.

Export never trusts a folder that merely looks like a run: ``manifest.json`` is written last by the
pipeline, so a run without it is unfinished (or not a run at all) and is refused."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .. import artifacts as A
from ..errors import LoraAdaptError, UsageError
from ..recipe import Recipe, recipe_from_dict

if TYPE_CHECKING:
    from ..modeling.loading import Head

HEADS = ("causal_lm", "sequence_classification", "token_classification")
QUANTIZED_METHODS = ("nf4", "fp4", "int8")
# Tokenizer files a serving engine or `AutoTokenizer.from_pretrained` reads from an adapter folder.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)


@dataclass(frozen=True)
class RunInfo:
    """What export needs from a run: its manifest, its resolved recipe (when readable) and its adapter."""

    run_dir: Path
    manifest: dict[str, Any]
    recipe: Recipe | None

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / A.ADAPTER_DIR

    @property
    def head(self) -> Head:
        from ..modeling import auto_class

        name = self.manifest["base_model"].get("auto_class") or "AutoModelForCausalLM"
        return cast(
            "Head", next((h for h in HEADS if auto_class(cast("Head", h)).__name__ == name), "causal_lm")
        )

    @property
    def labels(self) -> tuple[str, ...] | None:
        labels = (self.manifest.get("task") or {}).get("labels")
        return tuple(labels) if labels and self.head != "causal_lm" else None

    @property
    def pooling(self) -> str:
        """The pooling the head was trained with (runs before pooling was recorded used the model's own)."""
        return (self.manifest.get("task") or {}).get("pooling") or "model"

    @property
    def multi_label(self) -> bool:
        return bool(self.recipe and self.recipe.task.multi_label)

    @property
    def quantization(self) -> str:
        return (self.manifest.get("quantization") or {}).get("method") or "none"

    @property
    def quantized(self) -> bool:
        return self.quantization in QUANTIZED_METHODS


def load_run(run_dir: Path) -> RunInfo:
    """Read a finished run; a folder without manifest.json or adapter/ is a usage error (exit 2)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(
            f"run directory {run_dir} does not exist", hint="pass the folder `lora-adapt run` printed"
        )
    if not (run_dir / A.MANIFEST).is_file():
        unfinished = run_dir.name.endswith(A.IN_PROGRESS_SUFFIX)
        raise UsageError(
            f"{run_dir} is not a finished run: it has no {A.MANIFEST}"
            + (" (an interrupted run)" if unfinished else ""),
            hint="finish the run first (`lora-adapt run RECIPE --resume`), or pass the folder of a finished run",
        )
    if not (run_dir / A.ADAPTER_DIR).is_dir():
        raise UsageError(
            f"{run_dir} has a {A.MANIFEST} but no {A.ADAPTER_DIR}/ folder",
            hint="the run directory is damaged; rerun the recipe",
        )
    return RunInfo(run_dir.resolve(), A.read_json(run_dir / A.MANIFEST), _read_recipe(run_dir))


def _read_recipe(run_dir: Path) -> Recipe | None:
    import yaml

    path = run_dir / A.RESOLVED_RECIPE
    if not path.is_file():
        return None
    try:
        return recipe_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, source=str(path))
    except (LoraAdaptError, yaml.YAMLError):
        return None  # a recipe from an older schema: the manifest alone is enough to export


def copy_tokenizer_files(source: Path, dest: Path) -> list[str]:
    copied = []
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, dest / name)
            copied.append(name)
    return copied


def check_output_dir(out_dir: Path, run_dir: Path, overwrite: bool) -> Path:
    out_dir = Path(out_dir).resolve()
    if out_dir == run_dir or run_dir.is_relative_to(out_dir) or out_dir == run_dir / A.ADAPTER_DIR:
        raise UsageError(
            f"--out {out_dir} would replace the run itself",
            hint=f"choose a new folder, e.g. {run_dir / A.MERGED_DIR}",
        )
    if out_dir.exists() and not overwrite:
        raise UsageError(
            f"{out_dir} already exists", hint="pass --overwrite to replace it, or choose another --out"
        )
    return out_dir
