"""Library chatter is not the user's problem: one place that quiets it (the CLI, the pipeline, the
bench workers and reloads call it)."""

from __future__ import annotations

import logging
import warnings

LIBRARIES = ("bitsandbytes", "transformers", "peft", "trl", "accelerate", "datasets", "huggingface_hub")
WARNINGS = (".*autograd kernel was not registered.*", ".*MatMul8bitLt: inputs will be cast.*")


def quiet_warnings() -> None:
    """Deprecation notices and optional-kernel warnings (cheap: imports nothing)."""
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    for message in WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)


def quiet_libraries() -> None:
    """Also transformers' and datasets' own verbosity and progress bars (imports them)."""
    quiet_warnings()
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover - datasets is a dependency
        pass
