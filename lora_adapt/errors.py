"""The error types a user can see. The CLI is the single boundary that turns them into a
message, a hint and an exit code (2 for bad recipes and usage, 1 for runtime failures)."""

from __future__ import annotations

from collections.abc import Iterator


class LoraAdaptError(Exception):
    """A failure with a message for a person, a hint on how to fix it and an exit code."""

    exit_code = 1
    reported_elsewhere = False
    """Another process of the same distributed run prints this error; this one only exits with its code."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class RecipeError(LoraAdaptError):
    """The recipe (or a --set override) is invalid. Carries every problem found in one pass."""

    exit_code = 2

    def __init__(self, problems: list[str], source: str | None = None, hint: str | None = None):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        head = f"{len(self.problems)} problem(s){where}:"
        body = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{head}\n{body}", hint=hint)


class UsageError(LoraAdaptError):
    """The command line was used wrongly (missing run dir, conflicting flags...)."""

    exit_code = 2


class DataError(LoraAdaptError):
    """The data named by the recipe is missing, malformed or empty after cleaning."""

    exit_code = 2


class ModelLoadError(LoraAdaptError):
    """The model cannot be loaded as the recipe asks (missing path, missing bitsandbytes...)."""

    exit_code = 2


class RunExistsError(LoraAdaptError):
    """A finished run is already at the output path and overwriting was not asked for."""

    exit_code = 2


class RunLockedError(LoraAdaptError):
    """Another process holds the run directory's lock (a run of the same name is writing it)."""

    exit_code = 2


class DiskFullError(LoraAdaptError):
    """The disk holding the run has (or would have) no space left."""

    exit_code = 1


class TrainingDivergedError(LoraAdaptError):
    """Training diverged: a non-finite loss or gradient, or a final loss above the starting (or chance) loss."""

    exit_code = 1


class HubError(LoraAdaptError):
    """Publishing to or pulling from the Hugging Face Hub failed (credentials, permissions, network).

    Exit 2 when the user must fix something (token, repo id, model card); 1 for network/server failures."""

    exit_code = 1


class DistributedRunError(LoraAdaptError):
    """One process of a distributed run failed: every process stops with that process's message and exit
    code, so the run fails as a whole and nothing is left looking finished."""

    def __init__(self, message: str, hint: str | None, exit_code: int, *, abandoned: bool):
        super().__init__(message, hint=hint, exit_code=exit_code)
        self.abandoned = (
            abandoned  # raised inside collective work: the others learn of it when this process leaves
        )


def exception_chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, then the exception it was raised from (``__cause__``) or while handling (``__context__``),
    and so on, each once (a chain that loops back ends there). Libraries wrap the failure that matters
    (an ENOSPC inside a safetensors error, a timeout inside a Hub error): look for it along this chain."""
    seen: set[int] = set()
    current = exc
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
