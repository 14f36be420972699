"""Request bodies of the OpenAI-compatible endpoints: the fields lora-adapt honours. A field it does not
know is refused (400, ``unknown_parameter``, naming it) rather than dropped: ``logit_bias``, ``tools``,
``response_format``, ``guided_json``... would change the answer, and a client must not believe they were
applied. A field lora-adapt cannot honour with a non-default value (``n``, penalties, ``logprobs``,
``echo``) is refused when set. The one field accepted and ignored is ``user`` (OpenAI's end-user id for
abuse monitoring: it never changes an answer). vLLM's sampling extensions ``top_k`` and ``repetition_penalty``
are honoured."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Sampling(Body):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1)
    """vLLM's extension: sample from the k most likely tokens; -1 or 0: all of them."""
    repetition_penalty: float | None = Field(None, gt=0.0, le=2.0)
    """vLLM's extension (as transformers applies it): above 1 discourages repeating tokens."""
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    n: int = Field(1, ge=1, le=1)
    """One answer per prompt (more would need sampling several times: not supported)."""
    presence_penalty: float = Field(0.0, ge=0.0, le=0.0)
    frequency_penalty: float = Field(0.0, ge=0.0, le=0.0)
    logprobs: Any = None
    user: str | None = None
    """OpenAI's end-user id (abuse monitoring): accepted and ignored, it never changes an answer."""

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class CompletionRequest(Sampling):
    prompt: str | list[str]
    echo: bool = False

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class Message(Body):
    role: Literal["system", "user", "assistant", "developer"]
    content: str


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def budget(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def chat(self) -> list[dict[str, str]]:
        return [
            {"role": "system" if m.role == "developer" else m.role, "content": m.content}
            for m in self.messages
        ]


class ClassifyRequest(Body):
    model: str
    input: str | list[str] | list[dict[str, Any]] = Field(min_length=1)
    """Texts, or rows such as ``{"tokens": [...]}`` for taggers."""
    top_labels: int | None = Field(None, ge=0)
    """Label probabilities per input (0 = all; 5 when not given): for classifier and relation heads only."""

    def inputs(self) -> list[Any]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class LoadRequest(Body):
    name: str
    source: str
    """A run directory, an adapter folder or hub:ORG/NAME@REV, as the server's machine sees it."""
