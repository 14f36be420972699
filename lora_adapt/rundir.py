"""A finished run directory, read once: the one reader that eval, merge, export, push, the model card,
the bench and adapter loading share (no torch).

A folder that merely looks like a run is refused: ``manifest.json`` is written last by the pipeline
(inside ``<name>.incomplete/``, renamed when the run finishes), so a folder without it is unfinished
or not a run at all. Everything a reload needs - head, pooling, labels, quantization, the base
model's identity - comes from the manifest, which every run of this version writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import artifacts as A
from .errors import LoraAdaptError, UsageError
from .recipe import Recipe, recipe_from_dict
from .recipe.derived import HEADS, Head, head_for, head_of_auto_class, is_quantized


@dataclass(frozen=True)
class RunDir:
    """A finished run: manifest, metrics, resolved recipe (typed when this schema reads it) and adapter."""

    path: Path
    manifest: dict[str, Any]
    recipe: Recipe | None  # None for a recipe written by an older schema: the manifest is enough to reload
    recipe_dict: dict[str, Any] = field(default_factory=dict)  # the resolved recipe as plain YAML data
    metrics: dict[str, Any] = field(default_factory=dict)
    merge_report: dict[str, Any] = field(default_factory=dict)  # merged/merge_verification.json, if merged

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.path.name)

    @property
    def adapter_dir(self) -> Path:
        return self.path / A.ADAPTER_DIR

    @property
    def merged_dir(self) -> Path:
        return self.path / A.MERGED_DIR

    @property
    def task(self) -> dict[str, Any]:
        return self.manifest.get("task") or {}

    @property
    def base_model(self) -> dict[str, Any]:
        return self.manifest.get("base_model") or {}

    @property
    def task_type(self) -> str:
        return str(self.task.get("type") or "sft")

    @property
    def mode(self) -> str:
        return "head" if self.head != "causal_lm" else "generative"

    @property
    def head(self) -> Head:
        """As recorded (``task.head``), else from the task's type and mode, else from the auto class."""
        recorded = self.task.get("head")
        if recorded in HEADS:
            return recorded
        if self.task.get("mode") in ("head", "generative"):
            return head_for(self.task_type, self.task["mode"])
        return head_of_auto_class(self.base_model.get("auto_class"))

    @property
    def labels(self) -> tuple[str, ...] | None:
        labels = self.task.get("labels")
        return tuple(labels) if labels and self.head != "causal_lm" else None

    @property
    def pooling(self) -> str:
        """The pooling the head was trained with (runs before pooling was recorded used the model's own)."""
        return str(self.task.get("pooling") or "model")

    @property
    def multi_label(self) -> bool:
        return bool(self.recipe and self.recipe.task.multi_label)

    @property
    def quantization(self) -> str:
        return str((self.manifest.get("quantization") or {}).get("method") or "none")

    @property
    def quantized(self) -> bool:
        return is_quantized(self.quantization)


def read_run(path: str | Path, *, for_use: bool = True) -> RunDir:
    """Read a finished run; anything else (missing, unfinished, damaged) is a usage error (exit 2). A run
    kept only for diagnosis (its training diverged and that was not allowed) is refused ``for_use``; the
    model card, which describes it, reads it with ``for_use=False``."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UsageError(
            f"run directory {path} does not exist", hint="pass the folder `lora-adapt run` printed"
        )
    if not (path / A.MANIFEST).is_file():
        unfinished = path.name.endswith(A.IN_PROGRESS_SUFFIX) or A.in_progress_dir(path).exists()
        raise UsageError(
            f"{path} is not a finished run: it has no {A.MANIFEST}"
            + (" (an interrupted run)" if unfinished else ""),
            hint="finish the run first (`lora-adapt run RECIPE --resume`), or pass the folder of a finished run",
        )
    manifest = _read_json(path / A.MANIFEST, required=True) or {}
    if not (path / A.ADAPTER_DIR).is_dir():
        raise UsageError(
            f"{path} has a {A.MANIFEST} but no {A.ADAPTER_DIR}/ folder",
            hint="the run directory is damaged; rerun the recipe",
        )
    _check_adapter_files(path / A.ADAPTER_DIR, run=True)
    metrics = _read_json(path / A.METRICS) or {}
    if for_use:
        _refuse_diverged(path, metrics)
    recipe_dict, recipe = _read_recipe(path)
    return RunDir(
        path=path.resolve(),
        manifest=manifest,
        recipe=recipe,
        recipe_dict=recipe_dict,
        metrics=metrics,
        merge_report=_read_json(path / A.MERGED_DIR / A.MERGE_VERIFICATION) or {},
    )


def judged_loss(rise: dict[str, Any]) -> str:
    """What the run's training loss check (training/divergence.py) judged, as its record says: "the final
    training loss", or the kept checkpoint's."""
    if rise.get("kept_step") is not None:
        return f"the training loss of the kept checkpoint (step {rise['kept_step']}, early stopping's best)"
    return "the final training loss"


def _refuse_diverged(path: Path, metrics: dict[str, Any]) -> None:
    """A run whose training loss check failed (and was not allowed) is written for diagnosis, not for use:
    evaluating, merging, exporting, serving or publishing its adapter is refused."""
    divergence = (metrics.get("train") or {}).get("divergence")
    if divergence and not divergence.get("allowed"):
        raise UsageError(
            f"{path} is the run of a training that diverged ({judged_loss(divergence)} "
            f"{divergence['final']['loss']:.4g} is above the {' and the '.join(divergence['above'])}); "
            "its report.md says why, and its adapter is not one to use",
            hint="fix the recipe and rerun with --overwrite, or rerun with --set training.divergence.allow=true "
            "to keep such a run",
        )


def _check_adapter_files(folder: Path, *, run: bool) -> None:
    """An adapter folder needs its config and weights (safetensors, or the .bin of older PEFT saves)."""
    weights = [folder / A.ADAPTER_WEIGHTS, folder / "adapter_model.bin"]
    missing = [A.ADAPTER_CONFIG] * (not (folder / A.ADAPTER_CONFIG).is_file())
    missing += [A.ADAPTER_WEIGHTS] * (not any(w.is_file() for w in weights))
    if missing:
        raise UsageError(
            f"{folder} lacks {' and '.join(missing)}: the {'run directory' if run else 'adapter folder'} is damaged",
            hint="rerun the recipe (with --overwrite)" if run else "copy the whole adapter folder again",
        )


def _read_json(path: Path, *, required: bool = False) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = A.read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        if not required:
            return None
        raise UsageError(
            f"{path} is damaged: not valid JSON ({exc})",
            hint="the run directory was changed or cut short after it finished; rerun the recipe",
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is damaged: expected a JSON object", hint="rerun the recipe")
    return data


def _read_recipe(path: Path) -> tuple[dict[str, Any], Recipe | None]:
    import yaml

    file = path / A.RESOLVED_RECIPE
    if not file.is_file():
        return {}, None
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return {}, None
    if not isinstance(data, dict):
        return {}, None
    try:
        return data, recipe_from_dict(data, source=str(file))
    except LoraAdaptError:
        return data, None  # a recipe from an older schema: the manifest alone is enough to reload


# --- adapter folders -------------------------------------------------------------------------------

RECORD_VERSION = 1
PEFT_HEADS: dict[str, Head] = {
    "CAUSAL_LM": "causal_lm",
    "SEQ_CLS": "sequence_classification",
    "TOKEN_CLS": "token_classification",
}


def adapter_record(
    manifest: dict[str, Any], *, multi_label: bool = False, inference: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What ``adapter/lora_adapt.json`` holds: enough to reload the adapter on the right base, pooled and
    labelled as trained, from the adapter folder alone (an exported or pushed adapter has no manifest),
    and to prompt it as it was trained (``inference``: see :func:`inference_record`)."""
    task = manifest.get("task") or {}
    head = task.get("head") or head_of_auto_class((manifest.get("base_model") or {}).get("auto_class"))
    return {
        "lora_adapt_record": RECORD_VERSION,
        "lora_adapt_version": manifest.get("lora_adapt_version"),
        "name": manifest.get("name"),
        "task": {**task, "head": head, "multi_label": multi_label},
        "base_model": manifest.get("base_model") or {},
        "quantization": manifest.get("quantization") or {"method": "none"},
        "adapter": manifest.get("adapter") or {},
        "inference": inference or {},
    }


def inference_record(recipe: Recipe, stats: dict[str, Any]) -> dict[str, Any]:
    """How the adapter reads new inputs as it was trained: the trained layout (``chat``, ``prompt_completion``,
    ``completion`` or a task layout) and the source format, the prompt settings, the input length limit
    and the answer budget of generative tasks. `predict` and `serve` prompt an adapter folder with it."""
    return {
        "layout": stats.get("layout"),
        "format": stats.get("format"),
        "system_prompt": recipe.data.system_prompt,
        "prompt_template": recipe.data.prompt_template,
        "max_seq_length": recipe.data.max_seq_length,
        "max_new_tokens": recipe.evaluation.max_new_tokens,
        "label_separator": recipe.task.label_separator,
        "fields": list(recipe.task.fields) if recipe.task.fields else None,
        "negative_label": recipe.task.negative_label,
    }


@dataclass(frozen=True)
class AdapterInfo:
    """An adapter folder as lora-adapt reloads it: where it is, what it was trained for and on which base.

    Read from the run's manifest when the folder belongs to a run, else from its ``lora_adapt.json``,
    else (an adapter trained elsewhere) from ``adapter_config.json`` alone."""

    folder: Path
    name: str
    head: Head
    labels: tuple[str, ...] | None
    pooling: str
    multi_label: bool
    task_type: str
    quantization: dict[str, Any]
    base_model: dict[str, Any]  # the recorded identity; an adapter from elsewhere has only name_or_path
    config: dict[str, Any]  # adapter_config.json
    run: RunDir | None = None
    task: dict[str, Any] = field(default_factory=dict)
    """The recorded task block (manifest ``task``): e.g. ``targets`` (names and the scaling to undo) for
    regression, ``inputs`` (["text"] or ["text", "text_b"]) for sentence pairs."""
    inference: dict[str, Any] = field(default_factory=dict)
    """How to prompt the adapter on new inputs (lora_adapt.json's ``inference``: layout, prompt settings,
    input length and answer budget; see ``inference_record``)."""

    @property
    def target_scaling(self) -> dict[str, Any] | None:
        """Regression heads: ``{"method", "mean", "std"}`` to map head outputs back to target units."""
        targets = self.task.get("targets") or {}
        return targets.get("scaling")

    @property
    def mode(self) -> str:
        return "head" if self.head != "causal_lm" else "generative"

    @property
    def quantized(self) -> bool:
        return is_quantized(self.quantization.get("method"))


def read_adapter(path: str | Path, *, name: str | None = None) -> AdapterInfo:
    """A local run directory, or an adapter folder (``adapter_config.json`` inside), as :class:`AdapterInfo`."""
    path = Path(path).expanduser()
    if (path / A.MANIFEST).is_file() or path.name.endswith(A.IN_PROGRESS_SUFFIX):
        return _from_run(read_run(path), name)
    if not (path / A.ADAPTER_CONFIG).is_file():
        raise UsageError(
            f"{path} is neither a run directory (manifest.json) nor an adapter folder ({A.ADAPTER_CONFIG})",
            hint="give a run directory, its adapter/ folder, or a Hub reference hub:NAMESPACE/NAME[@REVISION]",
        )
    if path.name == A.ADAPTER_DIR and (path.parent / A.MANIFEST).is_file():
        return _from_run(read_run(path.parent), name)
    _check_adapter_files(path, run=False)
    config = _read_json(path / A.ADAPTER_CONFIG, required=True) or {}
    record = _read_json(path / A.ADAPTER_RECORD)
    if record is not None:
        return _from_record(path, record, config, name)
    return _from_peft_config(path, config, name)


def _from_run(run: RunDir, name: str | None) -> AdapterInfo:
    config = _read_json(run.adapter_dir / A.ADAPTER_CONFIG, required=True) or {}
    return AdapterInfo(
        folder=run.adapter_dir,
        name=name or run.name,
        head=run.head,
        labels=run.labels,
        pooling=run.pooling,
        multi_label=run.multi_label,
        task_type=run.task_type,
        quantization=run.manifest.get("quantization") or {"method": "none"},
        base_model=run.base_model,
        config=config,
        run=run,
        task=run.task,
        inference=_run_inference(run),
    )


def _run_inference(run: RunDir) -> dict[str, Any]:
    if run.recipe is not None:
        return inference_record(run.recipe, (run.manifest.get("data") or {}).get("stats") or {})
    record = _read_json(run.adapter_dir / A.ADAPTER_RECORD) or {}
    return dict(record.get("inference") or {})


def _from_record(
    folder: Path, record: dict[str, Any], config: dict[str, Any], name: str | None
) -> AdapterInfo:
    task = record.get("task") or {}
    head: Head = task["head"] if task.get("head") in HEADS else "causal_lm"
    labels = task.get("labels")
    return AdapterInfo(
        folder=folder.resolve(),
        name=name or str(record.get("name") or folder.name),
        head=head,
        labels=tuple(labels) if labels and head != "causal_lm" else None,
        pooling=str(task.get("pooling") or "model"),
        multi_label=bool(task.get("multi_label")),
        task_type=str(task.get("type") or "sft"),
        quantization=record.get("quantization") or {"method": "none"},
        base_model=record.get("base_model") or {},
        config=config,
        task=task,
        inference=dict(record.get("inference") or {}),
    )


def _from_peft_config(folder: Path, config: dict[str, Any], name: str | None) -> AdapterInfo:
    head = PEFT_HEADS.get(str(config.get("task_type") or "CAUSAL_LM"), "causal_lm")
    base = config.get("base_model_name_or_path")
    local = bool(base) and Path(str(base)).expanduser().is_dir()
    return AdapterInfo(
        folder=folder.resolve(),
        name=name or folder.name,
        head=head,
        labels=None,
        pooling="model",
        multi_label=False,
        task_type="sft" if head == "causal_lm" else "classification",
        quantization={"method": "none"},
        config=config,
        base_model={
            "name_or_path": base,
            "revision": config.get("revision"),
            "hub_id": None if local else base,
            "resolved_path": str(Path(str(base)).expanduser().resolve()) if local else None,
        },
    )
