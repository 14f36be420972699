"""`lora-adapt compose A B ... --method M --weights ... --out DIR`: one adapter from several (PEFT's
``add_weighted_adapter``), written as a normal run directory so `eval-matrix`, `merge`, `export`, `push`
and `serve` take it like any trained run.

The run directory holds the composed adapter (with its ``lora_adapt.json``), a manifest whose
``composition`` block names the method, weights, density and every source (path and base identity), the
first source's resolved recipe (renamed), a report and a model card. What PEFT combines:

- ``linear``, ``ties``, ``dare_linear``, ``dare_ties``: A and B matrices separately, each weighted by
  ``sqrt(weight x scaling)`` (same rank required); ``linear`` is ``A = sum sqrt(w s) A_i``, ``B = sum sqrt(w s) B_i``;
- ``cat``: the adapters side by side (rank = sum of ranks): the update is exactly ``sum w_i s_i B_i A_i``;
- ``svd``: the weighted sum of the updates, truncated back to a rank by SVD.

Adapters whose classifier head is saved in full (PEFT ``modules_to_save``) cannot be combined by PEFT (two
heads for one module): they are refused before anything is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from .. import artifacts as A
from ..errors import UsageError

Method = Literal["linear", "cat", "svd", "ties", "dare_ties", "dare_linear"]
METHODS: tuple[str, ...] = get_args(Method)
NEEDS_DENSITY = ("ties", "dare_ties", "dare_linear")
COMPOSED = "default"  # PEFT saves the adapter named "default" at the folder's top level


def compose(
    sources: Mapping[str, str],
    out: Path,
    *,
    method: str = "linear",
    weights: Sequence[float] | None = None,
    density: float | None = None,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Combine ``sources`` ({name: run dir, adapter folder or hub id}) into the run directory ``out``."""
    from ..modeling import load_adapted

    weights = _check(sources, method, weights, density, out, overwrite)
    from ..modeling.adapted import resolve_adapter

    infos = [resolve_adapter(src, name=name) for name, src in sources.items()]
    heads = [i.name for i in infos if i.head != "causal_lm" or i.config.get("modules_to_save")]
    if heads:
        raise UsageError(
            f"PEFT cannot combine adapters that save whole modules (classifier heads, modules_to_save): {', '.join(heads)}",
            hint="compose generative (causal LM) adapters trained without modules_to_save",
        )
    adapted = load_adapted(infos)
    try:
        adapted.model.add_weighted_adapter(
            adapters=list(sources),
            weights=list(weights),
            adapter_name=COMPOSED,
            combination_type=method,
            density=density,
        )
    except ValueError as exc:  # e.g. different ranks for linear
        raise UsageError(
            f"cannot compose these adapters with {method!r}: {exc}", hint="try --method cat or svd"
        ) from None
    composition = {
        "method": method,
        "weights": list(weights),
        "density": density,
        "sources": [_source_record(i, sources[i.name]) for i in infos],
    }
    keep = [p for i in infos for p in (i.folder, *([i.run.path] if i.run else []))]
    with A.staged_output(Path(out), overwrite=overwrite, keep=keep, echo=echo) as stage:
        _write(stage, adapted, infos, composition, Path(out).name)
    echo(f"composed {', '.join(sources)} ({method}, weights {list(weights)}) into {out}")
    return composition


def _check(sources, method, weights, density, out: Path, overwrite: bool) -> list[float]:
    if len(sources) < 2:
        raise UsageError("compose needs at least two adapters", hint="lora-adapt compose A B --out DIR")
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}", hint=f"one of {', '.join(METHODS)}")
    weights = list(weights) if weights else [1.0 / len(sources)] * len(sources)
    if len(weights) != len(sources):
        raise UsageError(
            f"{len(weights)} weights for {len(sources)} adapters", hint="give one --weights value per adapter"
        )
    if method in NEEDS_DENSITY and (density is None or not 0.0 < density <= 1.0):
        raise UsageError(f"--method {method} needs --density in (0, 1]", hint="e.g. --density 0.5")
    A.check_output(out, overwrite=overwrite, keep=_local_sources(sources))
    return weights


def _local_sources(sources: dict[str, str]) -> list[Path]:
    return [Path(src) for src in sources.values() if not str(src).startswith("hub:")]


def _source_record(info, source: str) -> dict[str, Any]:
    return {
        "name": info.name,
        "source": str(source),
        "folder": str(info.folder),
        "task": info.task_type,
        "rank": info.config.get("r"),
        "lora_alpha": info.config.get("lora_alpha"),
        "config_sha256": info.base_model.get("config_sha256"),
    }


def _write(stage: Path, adapted, infos, composition: dict[str, Any], name: str) -> None:
    from ..hub import render_model_card
    from ..manifest import package_versions, utc_now
    from ..rundir import adapter_record

    adapter_dir = stage / A.ADAPTER_DIR
    model = adapted.model
    model.set_adapter(COMPOSED)  # deleting the active adapter makes PEFT warn and pick another
    for other in [i.name for i in infos]:
        model.delete_adapter(other)
    model.save_pretrained(adapter_dir)
    adapted.tokenizer.save_pretrained(adapter_dir)
    first = infos[0]
    template = first.run.manifest if first.run is not None else {}
    config = model.peft_config[COMPOSED]
    trainable = sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n)
    manifest = {
        "lora_adapt_version": package_versions()["lora-adapt"],
        "created_utc": utc_now(),
        "name": name,
        "task": template.get("task") or {"type": first.task_type, "head": first.head, "mode": first.mode},
        "base_model": first.base_model,
        "quantization": first.quantization,
        "adapter": {
            "method": "lora",
            "rank": config.r,
            "alpha": config.lora_alpha,
            "target_modules": sorted(config.target_modules)
            if isinstance(config.target_modules, set)
            else config.target_modules,
            "modules_to_save": [],
            "trainable_params": trainable,
        },
        "composition": composition,
        "versions": package_versions(),
        "data": template.get("data") or {},
    }
    record = adapter_record(manifest, multi_label=first.multi_label, inference=first.inference)
    A.atomic_write_json(adapter_dir / A.ADAPTER_RECORD, record)
    recipe = (
        dict(first.run.recipe_dict)
        if first.run is not None
        else {"name": name, "task": {"type": first.task_type}}
    )
    import yaml

    A.atomic_write_text(stage / A.RESOLVED_RECIPE, yaml.safe_dump({**recipe, "name": name}, sort_keys=False))
    A.atomic_write_json(stage / A.MANIFEST, manifest)
    A.atomic_write_json(stage / A.METRICS, {"composition": composition})
    A.atomic_write_text(stage / A.REPORT, _report(name, composition))
    A.atomic_write_text(stage / A.MODEL_CARD, render_model_card(stage))


def _report(name: str, composition: dict[str, Any]) -> str:
    lines = [f"# {name}: a composition of {len(composition['sources'])} adapters", ""]
    lines.append(
        f"Method `{composition['method']}`"
        + (f", density {composition['density']}" if composition["density"] else "")
        + "."
    )
    lines += ["", "| source | weight | rank | path |", "|---|---|---|---|"]
    for source, weight in zip(composition["sources"], composition["weights"], strict=True):
        lines.append(f"| {source['name']} | {weight:g} | {source['rank']} | {source['source']} |")
    lines += ["", "Score it beside its sources with `lora-adapt eval-matrix`."]
    return "\n".join(lines) + "\n"
