"""Settings for running adapters on new inputs (`predict`) and serving them (`serve`): frozen, typed,
every default here with its reason. No torch import (the CLI builds these before loading a model)."""

from __future__ import annotations

from pydantic import Field

from .schema import Spec


class GenerationSpec(Spec):
    """How text is generated for a prompt (sft adapters; tasks in generative mode use their recipe's
    evaluation settings so that `predict` answers as `eval` scored)."""

    max_new_tokens: int = Field(256, ge=1)
    """Most new tokens per answer; generation also stops at the tokenizer's EOS (and end-of-turn) token."""
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    """0 = greedy (deterministic); above 0 samples with this temperature."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass (only when sampling)."""
    top_k: int = Field(0, ge=0)
    """Sample among the k most likely tokens; 0 = no limit (only when sampling)."""
    repetition_penalty: float = Field(1.0, gt=0.0)
    """> 1 discourages repeating tokens (1 = off)."""
    stop: tuple[str, ...] = ()
    """Strings that end an answer (cut before the first one found; the answer's finish reason is `stop`)."""
    seed: int | None = None
    """Seed for sampling (a seeded request is generated in a batch of its own, so it reproduces)."""

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class ServeSpec(Spec):
    """`lora-adapt serve`: where it listens, how requests are batched, and the limits that keep one bad
    or greedy client from taking the server down. Defaults are safe for a server on one machine."""

    host: str = "127.0.0.1"
    """Loopback only; bind 0.0.0.0 deliberately (with an API key) to serve other machines."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port (0 = any free port, printed at start)."""
    api_key: str | None = None
    """When set, every /v1 request needs `Authorization: Bearer <key>` (401 otherwise)."""
    max_batch_size: int = Field(16, ge=1)
    """Most requests (rows) run in one forward pass, across adapters."""
    max_wait_ms: float = Field(10.0, ge=0.0)
    """How long the first queued request waits for others to join its batch."""
    max_body_bytes: int = Field(1_000_000, ge=1024)
    """Request bodies above this are refused with 413 before they are parsed."""
    max_prompt_tokens: int = Field(2048, ge=1)
    """Prompts (or texts to classify) longer than this many tokens are refused with 400. A text to classify
    that fits but is longer than the adapter's data.max_seq_length is read as training read it (its first
    max_seq_length tokens), and the answer says `"truncated": true` with its `input_tokens`."""
    max_tokens: int = Field(512, ge=1)
    """Most new tokens a request may ask for; larger `max_tokens` is refused with 400."""
    max_concurrent: int = Field(64, ge=1)
    """Requests in flight at once; more are refused with 429 (retry later)."""
    max_inputs: int = Field(64, ge=1)
    """Most texts in one /v1/classify or /v1/completions request."""
    timeout_s: float = Field(120.0, gt=0.0)
    """A request still unanswered after this many seconds gets 504 (its work is dropped)."""
    allow_admin: bool = True
    """Expose POST /v1/adapters (load) and DELETE /v1/adapters/{name} (unload); needs the API key if one is set."""
