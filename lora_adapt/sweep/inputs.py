"""What trials share: the prepared (tokenized) data and, where it is safe, the loaded base model.

``TrialInputs`` is the ``load`` a sweep hands to ``pipeline.run`` for every trial. Prepared data is
reused while the settings it depends on (data, task, tokenizer, mode) are the trial's; the base model
is loaded once per (model, quantization, head, labels, pooling, seed) and every trial trains a fresh
deep copy of it, so a trial sees exactly the base a fresh `lora-adapt run` loads (same weights, same
seeded head). Quantized bases are not copied (bitsandbytes weights): they are loaded per trial, as
they are with ``sweep.reuse_base: never``.

Each load records how long it took (``last_seconds``, ``last_reused``), for the sweep's cost report.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from typing import Any

from ..recipe import Recipe
from ..recipe.derived import is_quantized
from ..runtime import Echo, Runtime, data_line, load_base, load_model_and_data


class TrialInputs:
    def __init__(self, reuse_base: bool = True):
        self.reuse_base = reuse_base
        self._data: dict[str, tuple[Any, Any]] = {}  # data key -> (tokenizer, prepared)
        self._bases: dict[str, Any] = {}  # base key -> LoadedModel kept pristine (never trained)
        self.last_seconds = 0.0
        self.last_reused: dict[str, bool] = {}

    def __call__(self, recipe: Recipe, runtime: Runtime, echo: Echo) -> tuple[Any, Any]:
        started = time.perf_counter()
        data_key, base_key = _data_key(recipe, runtime), _base_key(recipe, runtime)
        keep_base = self.reuse_base and not is_quantized(recipe.quantization.method)
        if data_key not in self._data:
            loaded, prepared = load_model_and_data(recipe, runtime, echo)
            self._data[data_key] = (loaded.tokenizer, prepared)
            self.last_reused = {"data": False, "base": False}
        else:
            tokenizer, prepared = self._data[data_key]
            echo(f"{data_line(prepared)} (reused from an earlier trial)")
            loaded = self._bases.get(base_key) if keep_base else None
            self.last_reused = {"data": True, "base": loaded is not None}
            if loaded is None:
                from transformers import set_seed

                set_seed(recipe.training.seed)  # as load_model_and_data seeds before the head is initialised
                loaded = load_base(recipe, runtime, tokenizer, prepared.labels)
        if keep_base:
            self._bases.setdefault(base_key, loaded)
            loaded = dataclasses.replace(loaded, model=copy.deepcopy(self._bases[base_key].model))
        self.last_seconds = time.perf_counter() - started
        return loaded, self._data[data_key][1]


def _data_key(recipe: Recipe, runtime: Runtime) -> str:
    m = recipe.model
    tokenizer = (m.name_or_path, m.tokenizer, m.revision, m.trust_remote_code)
    return json.dumps(
        [recipe.data.model_dump(mode="json"), recipe.task.model_dump(mode="json"), tokenizer, runtime.mode],
        sort_keys=True,
    )


def _base_key(recipe: Recipe, runtime: Runtime) -> str:
    return json.dumps(
        [
            recipe.model.model_dump(mode="json"),
            recipe.quantization.model_dump(mode="json"),
            recipe.task.model_dump(mode="json"),
            runtime.head,
            runtime.dtype,
            recipe.training.seed,
            _data_key(recipe, runtime),  # the labels come from the data
        ],
        sort_keys=True,
    )
