"""Shared fixtures: tiny real-architecture models saved once per session, offline."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
# prepared-data cache (lora_adapt/data/cache.py): one per test session, never the user's
_CACHE = tempfile.mkdtemp(prefix="lora-adapt-test-data-cache-")
os.environ["LORA_ADAPT_DATA_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)

from tiny_models import build_tiny_bert, build_tiny_causal_lm  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """Tiny LlamaForCausalLM; its tokenizer has no chat template and no pad token."""
    return build_tiny_causal_lm("llama", tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory) -> Path:
    """Tiny Qwen2ForCausalLM with a ChatML template, eos <|im_end|>, pad <|endoftext|>, tied embeddings."""
    return build_tiny_causal_lm("qwen2", tmp_path_factory.mktemp("models") / "tiny-qwen2")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def domain_runs(tmp_path_factory, tiny_bert_dir, tiny_qwen2_dir) -> dict[str, Path]:
    """Tiny finished runs for predict / AdapterSet / serve / compose (see helpers.build_domain_runs)."""
    from helpers import build_domain_runs

    return build_domain_runs(tmp_path_factory.mktemp("domains"), tiny_bert_dir, tiny_qwen2_dir)
