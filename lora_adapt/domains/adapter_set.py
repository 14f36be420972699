"""Many adapters on one base: load the base once, add and remove named adapters at runtime, and answer
a batch whose rows use different adapters in one forward pass (PEFT's ``adapter_names``).

    from lora_adapt import AdapterSet
    adapters = AdapterSet.load({"support": "runs/quickstart", "spam": "runs/sms", "bank": "hub:acme/bank@v1"})
    adapters.run([("support", "my invoice is wrong"), ("spam", "WIN a prize now!!!")])
    adapters.add("legal", "runs/legal"); adapters.remove("spam")

Every adapter is checked against the loaded base before its weights are attached: the base identity
recorded at training (model type, architectures, config and tokenizer hashes, weights fingerprint:
``modeling.identity.check_base``), the head it needs and its pooling (one base object has one head class and
one pooler), and every tensor of its file must fit the base (``attach.py``). A mismatch is refused with a
message naming what differs. Head adapters with different label sets share the base: each keeps its own
classifier (see ``attach.py`` for the widths). The base itself answers as ``base`` (causal LMs only: a
classifier base has no trained head).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LoraAdaptError, UsageError
from ..modeling.adapted import (
    AdapterRef,
    adapter_tokenizer,
    base_spec_for,
    load_recorded_base,
    resolve_adapter,
)
from ..modeling.identity import check_base, read_base_config
from ..modeling.loading import LoadedModel, load_model, load_tokenizer
from ..recipe.schema import ModelSpec, QuantizationSpec
from ..recipe.serving import GenerationSpec
from ..rundir import AdapterInfo
from .attach import attach
from .tasks import DEFAULT_TOP_K, Generation, Prompting, TaskKind, task_kind

BASE = "base"
"""The name under which the base model (no adapter) answers."""
RESERVED = (BASE, "auto", "__base__", "none")  # "none": a router's fallback meaning no fallback
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class UnknownAdapterError(UsageError):
    """A request named an adapter the set does not hold."""


class AdapterExistsError(UsageError):
    """An adapter is added under a name the set already holds (the server answers 409 Conflict)."""


@dataclass
class Member:
    """One adapter of the set (or the base): what it is, how it reads inputs, what it cost to add."""

    name: str
    kind: TaskKind
    tokenizer: Any
    info: AdapterInfo | None = None  # None for the base
    width: int | None = None  # head adapters: their own label count
    check: dict[str, str] = field(default_factory=dict)  # base identity: what was compared and how
    memory: dict[str, int] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        info = self.info
        return {
            "name": self.name,
            "kind": self.kind.name,
            "task": info.task_type if info else "base",
            "head": info.head if info else "causal_lm",
            "labels": list(self.kind.labels),
            "source": str(info.folder) if info else None,
            "base_check": self.check,
            "memory": self.memory,
        }


@dataclass(frozen=True)
class Prepared:
    """One input made ready for its adapter: token ids (a prompt, or a classifier's input) and its budget."""

    name: str
    row: dict[str, Any]
    ids: list[int]
    head: bool
    extra: dict[str, Any] = field(default_factory=dict)  # attention_mask, word positions
    budget: int = 0  # new tokens (generative)
    stop: tuple[str, ...] = ()  # stop strings of this row's request (else the batch's GenerationSpec.stop)
    input_tokens: int = 0  # the input's tokens before a head's truncation (generative: the prompt's)

    @property
    def truncated(self) -> bool:
        return self.input_tokens > len(self.ids)


class AdapterSet:
    """A base model loaded once, holding named adapters (see the module docstring)."""

    def __init__(self, loaded: LoadedModel, spec: ModelSpec):
        self.loaded = loaded
        self.spec = spec
        self.tokenizer = loaded.tokenizer
        self.model: Any = None  # the PeftModel, created with the first adapter
        self.members: dict[str, Member] = {}
        self.config = read_base_config(spec)
        self._width = 0
        if loaded.head == "causal_lm":
            self.members[BASE] = Member(
                BASE, Generation(Prompting.for_base(self.tokenizer), None), self.tokenizer
            )

    # --- building ----------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        adapters: Mapping[str, AdapterRef] | Sequence[AdapterRef] = (),
        *,
        base: str | Path | None = None,
        quantization: QuantizationSpec | None = None,
        echo=None,
        **model_changes: Any,
    ) -> AdapterSet:
        """Load the base (``base``, else the first adapter's recorded base, loaded as that adapter was
        trained unless ``quantization`` says otherwise) and add every adapter, in order."""
        named = adapters.items() if isinstance(adapters, Mapping) else [(None, a) for a in adapters]
        infos = [resolve_adapter(ref, name=name) for name, ref in named]
        if not infos and base is None:
            raise UsageError("nothing to load", hint="give a base model, or at least one adapter")
        if infos:
            spec = base_spec_for(infos[0], base=base, **model_changes)
            loaded = load_recorded_base(infos[0], spec, adapter_tokenizer(infos[0], spec), quantization)
        else:
            spec = ModelSpec(name_or_path=str(base), **model_changes)
            loaded = load_model(spec, quantization or QuantizationSpec(), tokenizer=load_tokenizer(spec))
        out = cls(loaded, spec)
        for info in infos:
            member = out.add(info.name, info)
            if echo is not None:
                echo(
                    f"adapter {member.name}: {member.kind.name}, +{member.memory['added_bytes'] / 2**20:.2f} MiB"
                )
        return out

    def add(self, name: str, ref: AdapterRef) -> Member:
        """Check ``ref`` against the base and attach it as ``name`` (the base is not reloaded)."""
        self._check_name(name)
        info = resolve_adapter(ref, name=name)
        kind = task_kind(info)
        check = self._check_fits(name, info)
        before = tensor_bytes(self._holder())
        attached = attach(self.model, self.loaded.model, name, str(info.folder), head_width=self._width)
        self.model = attached.model
        if attached.width is not None:
            self._width = max(self._width, attached.width)
        member = Member(
            name, kind, _own_tokenizer(info, self.spec, self.tokenizer), info, attached.width, check
        )
        member.memory = {
            "parameters": attached.parameters,
            "parameter_bytes": attached.parameter_bytes,
            "added_bytes": tensor_bytes(self._holder()) - before,
            "padding_bytes": attached.padding_bytes,
        }
        self.members[name] = member
        return member

    def remove(self, name: str) -> None:
        """Drop adapter ``name`` and free its weights (the base and the other adapters stay)."""
        if name == BASE or name not in self.members:
            raise UnknownAdapterError(
                f"no adapter named {name!r} is loaded", hint=f"loaded: {self.adapter_names}"
            )
        self.model.delete_adapter(name)
        del self.members[name]

    @property
    def adapter_names(self) -> list[str]:
        return [n for n in self.members if n != BASE]

    def __contains__(self, name: object) -> bool:
        return name in self.members

    def __getitem__(self, name: str) -> Member:
        if name not in self.members:
            known = ", ".join(self.members) or "none"
            raise UnknownAdapterError(f"no adapter named {name!r} is loaded", hint=f"loaded: {known}")
        return self.members[name]

    def _holder(self):
        return self.model if self.model is not None else self.loaded.model

    def _check_name(self, name: str) -> None:
        if not NAME.match(name) or name in RESERVED:
            raise UsageError(
                f"{name!r} cannot name an adapter",
                hint=f"use letters, digits, '.', '_' or '-' (at most 64), not {', '.join(RESERVED)}",
            )
        if name in self.members:
            raise AdapterExistsError(
                f"an adapter named {name!r} is already loaded", hint="remove it first, or pick another name"
            )

    def _check_fits(self, name: str, info: AdapterInfo) -> dict[str, str]:
        """Refuse an adapter this base cannot hold, naming what differs: the recorded base identity first,
        then the head class and the pooling (one base object has one of each)."""
        check = check_base(
            info.base_model,
            self.spec,
            self.tokenizer.pad_token_id,
            config=self.config,
            what=f"adapter {name!r}",
        )
        head = self.loaded.head
        if info.head != head:
            raise UsageError(
                f"adapter {name!r} needs the base loaded with a {info.head} head, but this set's base is "
                f"loaded as {head}",
                hint="one base object has one head class: serve it in a set (or server) of its own",
            )
        if head == "sequence_classification" and info.pooling != self.loaded.pooling:
            raise UsageError(
                f"adapter {name!r} was trained with pooling {info.pooling!r}, this set's base pools "
                f"{self.loaded.pooling!r}",
                hint="one base object has one pooler: serve it in a set of its own",
            )
        return check

    # --- running -----------------------------------------------------------------------------------

    def prepare(self, name: str, raw: dict[str, Any] | str, *, max_new_tokens: int | None = None) -> Prepared:
        """Read one input for adapter ``name`` and tokenize it as the adapter was trained."""
        member = self[name]
        kind = member.kind
        row = kind.row(raw)
        if kind.head:
            encoded = kind.encode(row, member.tokenizer)  # type: ignore[attr-defined]
            full = encoded.pop("input_tokens")
            return Prepared(name, row, encoded.pop("input_ids"), True, encoded, input_tokens=full)
        text, special = kind.prompt(row, member.tokenizer)  # type: ignore[attr-defined]
        ids = member.tokenizer(text, add_special_tokens=special)["input_ids"]
        if not ids:
            raise UsageError("the prompt is empty after tokenization", hint="send some text")
        budget = kind.budget(max_new_tokens, member.tokenizer)  # type: ignore[attr-defined]
        return Prepared(name, row, list(ids), False, budget=budget, input_tokens=len(ids))

    def run(
        self,
        items: Sequence[tuple[str, dict[str, Any] | str]],
        generation: GenerationSpec | None = None,
        *,
        top_k: int = DEFAULT_TOP_K,
    ) -> list[dict[str, Any]]:
        """Predictions for ``(adapter name, input)`` pairs, in order: one forward for the head rows and one
        generation for the generative rows, whatever mix of adapters they use."""
        generation = generation or GenerationSpec()
        prepared = [self.prepare(n, raw, max_new_tokens=generation.max_new_tokens) for n, raw in items]
        return self.execute(prepared, generation, top_k=top_k)

    def execute(
        self,
        batch: Sequence[Prepared],
        generation: GenerationSpec | None = None,
        *,
        top_k: int = DEFAULT_TOP_K,
        streamer: Any = None,
    ) -> list[dict[str, Any]]:
        """Run prepared inputs (see :meth:`run`); ``streamer`` receives the generated tokens step by step."""
        from .runner import classify, generate

        for p in batch:
            self[p.name]  # unloaded since it was prepared: refused by name
        out: list[dict[str, Any] | None] = [None] * len(batch)
        heads = [i for i, p in enumerate(batch) if p.head]
        texts = [i for i, p in enumerate(batch) if not p.head]
        if heads:
            for i, result in zip(heads, classify(self, [batch[i] for i in heads], top_k), strict=True):
                out[i] = result
        if texts:
            results = generate(self, [batch[i] for i in texts], generation or GenerationSpec(), streamer)
            for i, result in zip(texts, results, strict=True):
                out[i] = result
        return [r for r in out if r is not None]

    @contextmanager
    def routed(self, names: Sequence[str]) -> Iterator[dict[str, Any]]:
        """The model set up for rows of ``names``: one adapter switched on (or all off, for the base), else
        the ``adapter_names`` keyword for a mixed batch (``__base__`` for base rows)."""
        unique = set(names)
        if self.model is None or unique == {BASE}:
            with self.model.disable_adapter() if self.model is not None else _nothing():
                yield {}
            return
        if len(unique) == 1:
            self.model.set_adapter(names[0])
            yield {}
            return
        yield {"adapter_names": ["__base__" if n == BASE else n for n in names]}

    def memory_report(self) -> dict[str, Any]:
        """Bytes of the base's tensors and what each adapter added."""
        adapters = {n: m.memory for n, m in self.members.items() if n != BASE}
        return {
            "total_bytes": tensor_bytes(self._holder()),
            "base_bytes": tensor_bytes(self._holder())
            - sum(m.get("added_bytes", 0) for m in adapters.values()),
            "adapters": adapters,
        }


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def tensor_bytes(model) -> int:
    """Bytes of every distinct parameter and buffer tensor a model holds (shared tensors counted once)."""
    seen: dict[int, int] = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        seen[tensor.data_ptr()] = max(seen.get(tensor.data_ptr(), 0), tensor.numel() * tensor.element_size())
    return sum(seen.values())


def _own_tokenizer(info: AdapterInfo, spec: ModelSpec, shared):
    """The adapter's saved tokenizer (its chat template); the shared one when it saved none."""
    if not (info.folder / "tokenizer_config.json").is_file():
        return shared
    try:
        return adapter_tokenizer(info, spec)
    except LoraAdaptError:
        return shared


__all__ = [
    "BASE",
    "AdapterExistsError",
    "AdapterSet",
    "Member",
    "Prepared",
    "UnknownAdapterError",
    "tensor_bytes",
]
