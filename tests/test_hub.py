"""Publishing and pulling adapters against a Hub-compatible server running in the test (tests/hub_server.py).

The real huggingface_hub client talks HTTP to 127.0.0.1: create repo, validate YAML, preupload, LFS
batch + upload + verify, commit, revision info, tree listing, resolve."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from click.testing import CliRunner
from hub_server import HubServer, SilentServer, serve_hub

from lora_adapt import artifacts as A
from lora_adapt.cli import main
from lora_adapt.errors import HubError
from lora_adapt.hub import (
    check_write_access,
    pull_adapter,
    render_model_card,
    resolve_adapter_path,
    validate_model_card,
)

BASE_HUB_ID = "lora-adapt-tests/tiny-llama"
INPUT_IDS = torch.tensor([[1, 5, 9, 23, 42, 7, 3, 11]])


@pytest.fixture
def hub_server(monkeypatch) -> Iterator[HubServer]:
    """A fresh Hub on 127.0.0.1, the client configured to reach it (tests/hub_server.py)."""
    with serve_hub(monkeypatch) as server:
        yield server


# --- a finished run directory, built by hand --------------------------------------------------


def _logits(base_dir: Path, adapter_dir: Path | None) -> torch.Tensor:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir)
    with torch.no_grad():
        return model.eval()(INPUT_IDS).logits


def _manifest(base_dir: Path, hub_id: str | None) -> dict:
    return {
        "lora_adapt_version": "0.1.0",
        "created_utc": "2025-01-01T00:00:00Z",
        "name": "tiny-sft",
        "task": {"type": "sft", "mode": "generative", "labels": []},
        "base_model": {
            "name_or_path": hub_id or str(base_dir),
            "hub_id": hub_id,
            "revision": None,
            "resolved_path": str(base_dir),
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "auto_class": "AutoModelForCausalLM",
            "config_sha256": "0" * 64,
            "tokenizer_sha256": None,
            "num_parameters": 1000,
        },
        "quantization": {"method": "none", "double_quant": True, "compute_dtype": "auto"},
        "adapter": {
            "method": "lora",
            "rank": 4,
            "alpha": 8,
            "scaling": "standard",
            "target_modules": "all-linear",
            "modules_to_save": [],
            "trainable_params": 100,
            "total_params": 1000,
            "trainable_share": 0.1,
        },
        "runtime": {
            "device": "cpu",
            "dtype": "fp32",
            "precision": "fp32",
            "world_size": 1,
            "effective_batch_size": 4,
        },
        "versions": {"python": "3.11", "torch": torch.__version__, "peft": "0.x", "transformers": "5.x"},
        "data": {
            "files": {"/home/someone/data/train.jsonl": "ab" * 32},
            "rows": {"train": 40, "validation": 5, "test": 5},
            "stats": {
                "rows_read": {"train": 44, "validation": 5, "test": 5},
                "dropped": {"duplicate": {"train": 4}},
                "normalized": {"unicode": 0, "whitespace": 2},
            },
        },
        "recipe_sha256": "c" * 64,
        "seed": 42,
        "timings": {"total_s": 1.0},
    }


METRICS = {
    "train": {"global_step": 6, "final_loss": 2.5, "history": [{"step": 1, "loss": 3.0}]},
    "validation": {"before": {"loss": 4.1, "perplexity": 60.3}, "after": {"loss": 2.9, "perplexity": 18.2}},
    "test": {"before": {"loss": 4.0, "perplexity": 54.6}, "after": {"loss": 3.0, "perplexity": 20.1}},
}


def build_run(
    root: Path, base_dir: Path, *, hub_id: str | None = BASE_HUB_ID, metrics: dict | None = None
) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = root / "tiny-sft"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"
    )
    get_peft_model(model, config).save_pretrained(run / A.ADAPTER_DIR)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(run / A.ADAPTER_DIR)
    A.atomic_write_json(run / A.MANIFEST, _manifest(base_dir, hub_id))
    A.atomic_write_json(run / A.METRICS, METRICS if metrics is None else metrics)
    recipe = {
        "name": "tiny-sft",
        "model": {"name_or_path": hub_id or str(base_dir)},
        "data": {"path": "train.jsonl", "max_seq_length": 64},
        "training": {"max_steps": 6, "learning_rate": 0.005},
        "output": {"license": "MIT"},
    }
    A.atomic_write_text(run / A.RESOLVED_RECIPE, yaml.safe_dump(recipe))
    A.atomic_write_text(run / A.REPORT, "# report\n")
    A.atomic_write_text(run / A.MODEL_CARD, render_model_card(run))
    return run


@pytest.fixture(scope="module")
def run_dir(tiny_llama_dir, tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.mktemp("runs"), tiny_llama_dir)


@pytest.fixture(scope="module")
def reference_logits(run_dir, tiny_llama_dir) -> torch.Tensor:
    adapted = _logits(tiny_llama_dir, run_dir / A.ADAPTER_DIR)
    assert not torch.equal(adapted, _logits(tiny_llama_dir, None)), "the adapter must change the outputs"
    return adapted


def tree_hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def cli(*args: str, token: str | None = None):
    env = {"HF_TOKEN": token} if token else {}
    return CliRunner().invoke(main, list(args), env=env)


def assert_no_token(server: HubServer, *texts: str, folder: Path | None = None) -> None:
    for token in server.tokens.values():
        for text in texts:
            assert token not in text
        for path in folder.rglob("*") if folder else []:
            if path.is_file():
                assert token.encode() not in path.read_bytes(), path


# --- model card ---------------------------------------------------------------------------------


def test_model_card_front_matter(run_dir):
    text = render_model_card(run_dir, repo_id="acme/tiny-sft")
    meta = validate_model_card(text)
    assert meta["base_model"] == BASE_HUB_ID
    assert meta["base_model_relation"] == "adapter"
    assert meta["library_name"] == "peft"
    assert meta["pipeline_tag"] == "text-generation"
    assert meta["license"] == "mit"
    assert {"lora", "peft", "lora-adapt"} <= set(meta["tags"]) and "qlora" not in meta["tags"]
    assert "datasets" not in meta  # the data were local files, not Hub datasets
    (index,) = meta["model-index"]
    metrics = {m["type"]: m["value"] for r in index["results"] for m in r["metrics"]}
    assert metrics == {"loss": 3.0, "perplexity": 20.1} and index["name"] == "tiny-sft"
    assert 'PeftModel.from_pretrained(base, "acme/tiny-sft")' in text and "/home/someone" not in text
    assert "| test | 4.0000 | 3.0000 | 54.6000 | 20.1000 |" in text


def test_model_card_local_base_and_sparse_metrics(tiny_llama_dir, tmp_path):
    run = build_run(tmp_path, tiny_llama_dir, hub_id=None, metrics={})
    text = (run / A.MODEL_CARD).read_text()
    meta = validate_model_card(text)
    assert "base_model" not in meta and "base_model_relation" not in meta and "model-index" not in meta
    assert "has no Hugging Face Hub id" in text and str(tiny_llama_dir) not in text


def test_model_card_task_metrics_and_baselines(run_dir, tmp_path):
    import shutil

    run = Path(shutil.copytree(run_dir, tmp_path / "cls"))
    manifest = A.read_json(run / A.MANIFEST)
    manifest["task"] = {"type": "classification", "mode": "head", "labels": ["a", "b"]}
    manifest["quantization"]["method"] = "nf4"
    A.atomic_write_json(run / A.MANIFEST, manifest)
    A.atomic_write_json(
        run / A.METRICS,
        {
            "task": {"n": 50, "accuracy": 0.9, "f1_macro": 0.85, "per_class": {}},
            "baselines": {"majority": {"accuracy": 0.5, "f1_macro": 0.33}},
        },
    )
    text = render_model_card(run)
    meta = validate_model_card(text)
    assert meta["pipeline_tag"] == "text-classification" and "qlora" in meta["tags"]
    results = meta["model-index"][0]["results"][0]
    assert {m["type"]: m["value"] for m in results["metrics"]} == {"accuracy": 0.9, "f1": 0.85}
    assert "| this adapter | 0.9000 | 0.8500 |" in text and "| baseline: majority | 0.5000 | 0.3300 |" in text


def test_model_card_carries_the_runs_health_warnings(run_dir, tmp_path):
    """A collapsed adapter's card says so: the console and report.md did, the published card did not."""
    import shutil

    run = Path(shutil.copytree(run_dir, tmp_path / "collapsed"))
    warning = "COLLAPSED: the adapted model answers 'billing' for 98% of the test rows."
    metrics = {
        "task": {"n": 50, "accuracy": 0.4, "f1_macro": 0.1, "per_class": {}},
        "health": {"ok": False, "collapsed": True, "warnings": [warning], "likely_causes": ["too few steps"]},
    }
    A.atomic_write_json(run / A.METRICS, metrics)
    text = render_model_card(run)
    assert f"Health check at training time: {warning}" in text
    A.atomic_write_json(run / A.METRICS, {**metrics, "health": {"ok": True, "warnings": []}})
    assert "Health check" not in render_model_card(run)


@pytest.mark.parametrize(
    "front, problem",
    [
        ("base_model: /home/me/models/llama\nlibrary_name: peft", "base_model must be a Hub model id"),
        ("base_model: ./models/llama\nlibrary_name: peft", "base_model must be a Hub model id"),
        (
            "base_model: org/name\nlibrary_name: peft\ndatasets: [data/train.jsonl]",
            "datasets must list Hub dataset ids",
        ),
        ("base_model: org/name\nbase_model_relation: adapter", "library_name is missing"),
        ("library_name: peft\nmodel-index: [{name: x, results: [{task: {}}]}]", "model-index is malformed"),
        (
            "library_name: peft\nnote: hf_abcdefghijklmnopqrstuvwxyz0123456789",
            "looks like a Hugging Face access token",
        ),
        ("library_name: [peft", "not valid YAML"),
    ],
)
def test_validate_model_card_rejects(front, problem):
    with pytest.raises(HubError) as err:
        validate_model_card(f"---\n{front}\n---\n# card\n")
    assert problem in err.value.message and err.value.exit_code == 2


# --- push / pull round trip ---------------------------------------------------------------------


def test_push_then_pull_by_revision_gives_identical_logits(
    hub_server, run_dir, reference_logits, tiny_llama_dir, tmp_path, monkeypatch
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    token, before = hub_server.tokens["alice"], tree_hashes(run_dir)
    pushed = cli(
        "push", str(run_dir), "--repo-id", "acme/tiny-sft", "--endpoint", hub_server.endpoint, token=token
    )
    assert pushed.exit_code == 0, pushed.output
    branch = cli(
        "push",
        str(run_dir),
        "--repo-id",
        "acme/tiny-sft",
        "--revision",
        "exp-1",
        "--endpoint",
        hub_server.endpoint,
        token=token,
    )
    assert branch.exit_code == 0, branch.output
    assert f"{hub_server.endpoint}/acme/tiny-sft/tree/exp-1" in branch.output and "commit: " in branch.output

    files = hub_server.files("acme/tiny-sft", "exp-1")
    assert {A.ADAPTER_WEIGHTS, A.ADAPTER_CONFIG, A.MODEL_CARD, A.METRICS, A.RESOLVED_RECIPE} <= set(files)
    assert hub_server.state.lfs_objects, "the safetensors file goes through the LFS batch API"
    assert files[A.ADAPTER_WEIGHTS] == (run_dir / A.ADAPTER_DIR / A.ADAPTER_WEIGHTS).read_bytes()
    card = validate_model_card(files[A.MODEL_CARD].decode())
    assert card["base_model"] == BASE_HUB_ID and 'revision="exp-1"' in files[A.MODEL_CARD].decode()

    pulled = cli(
        "pull",
        "acme/tiny-sft",
        "--revision",
        "exp-1",
        "--out",
        str(tmp_path / "pulled"),
        "--endpoint",
        hub_server.endpoint,
        token=token,
    )
    assert pulled.exit_code == 0, pulled.output
    folder = Path(pulled.output.strip().splitlines()[-1])
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    with torch.no_grad():
        logits = PeftModel.from_pretrained(base, folder).eval()(INPUT_IDS).logits
    assert torch.equal(logits, reference_logits)

    by_id = pull_adapter(
        "acme/tiny-sft", endpoint=hub_server.endpoint, token=token, cache_dir=tmp_path / "cache"
    )
    assert (by_id / A.ADAPTER_WEIGHTS).read_bytes() == (folder / A.ADAPTER_WEIGHTS).read_bytes()
    ref = resolve_adapter_path(
        "hub:acme/tiny-sft@exp-1", endpoint=hub_server.endpoint, token=token, cache_dir=tmp_path / "cache"
    )
    assert ref.name == hub_server.state.repos["acme/tiny-sft"].branches["exp-1"]  # pinned to the commit
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # offline, the cache answers
    assert resolve_adapter_path("hub:acme/tiny-sft@exp-1", cache_dir=tmp_path / "cache") == ref
    assert tree_hashes(run_dir) == before
    assert_no_token(hub_server, pushed.output, branch.output, pulled.output, folder=run_dir)


def test_push_merged_model_then_adapter_over_it(
    hub_server, run_dir, reference_logits, tiny_llama_dir, tmp_path
):
    import shutil

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run = Path(shutil.copytree(run_dir, tmp_path / "run"))
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    PeftModel.from_pretrained(base, run / A.ADAPTER_DIR).merge_and_unload().save_pretrained(
        run / A.MERGED_DIR
    )
    A.atomic_write_json(
        run / A.MERGED_DIR / A.MERGE_VERIFICATION,
        {
            "dtype": "fp32",
            "qlora_gap": None,
            "merge": {
                "what": "merged vs base+adapter",
                "max_logit_diff": 2e-6,
                "mean_kl": 0.0,
                "greedy_agreement": 1.0,
                "positions": 32,
                "finite": True,
                "available": True,
            },
        },
    )
    token, args = hub_server.tokens["alice"], ("--repo-id", "acme/m", "--endpoint", hub_server.endpoint)
    assert cli("push", str(run), "--merged", *args, token=token).exit_code == 0
    files = hub_server.files("acme/m")
    assert {"config.json", "model.safetensors", A.MERGE_VERIFICATION} <= set(
        files
    ) and A.ADAPTER_CONFIG not in files
    text = files[A.MODEL_CARD].decode()
    meta = validate_model_card(text)
    assert meta["library_name"] == "transformers" and meta["base_model"] == BASE_HUB_ID
    assert (
        "base_model_relation" not in meta and "| merged vs base+adapter | 2e-06 | 0 | 100.0% | 32 |" in text
    )
    pulled = pull_adapter("acme/m", endpoint=hub_server.endpoint, token=token, dest=tmp_path / "pulled")
    with torch.no_grad():
        logits = AutoModelForCausalLM.from_pretrained(pulled, dtype=torch.float32).eval()(INPUT_IDS).logits
    torch.testing.assert_close(logits, reference_logits, atol=1e-5, rtol=1e-5)

    assert cli("push", str(run), *args, token=token).exit_code == 0  # the adapter over the merged model
    files = hub_server.files("acme/m")
    assert A.ADAPTER_WEIGHTS in files and "config.json" not in files and "model.safetensors" not in files


def test_push_through_the_xet_pipeline_when_every_file_is_regular(monkeypatch, run_dir, tmp_path):
    """With hf_xet installed, upload_folder takes huggingface_hub's pipelined upload; a server answering
    "regular" for every file keeps it off the Xet transfer (which this test server does not speak)."""
    pytest.importorskip("hf_xet")
    with serve_hub(monkeypatch, lfs=False) as server:
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_XET", False)
        result = cli(
            "push",
            str(run_dir),
            "--repo-id",
            "alice/x",
            "--endpoint",
            server.endpoint,
            token=server.tokens["alice"],
        )
        assert result.exit_code == 0, result.output
        assert (
            server.files("alice/x")[A.ADAPTER_WEIGHTS]
            == (run_dir / A.ADAPTER_DIR / A.ADAPTER_WEIGHTS).read_bytes()
        )
        assert not server.state.lfs_objects


def test_pushing_unchanged_run_again_is_a_no_op(hub_server, run_dir):
    token = hub_server.tokens["alice"]
    args = ("push", str(run_dir), "--repo-id", "alice/tiny", "--endpoint", hub_server.endpoint)
    first, second = cli(*args, token=token), cli(*args, token=token)
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    assert len(hub_server.commits("alice/tiny")) == 2  # creation + one upload


def test_resolve_adapter_path_local_forms(run_dir):
    assert resolve_adapter_path(run_dir) == run_dir / A.ADAPTER_DIR
    assert resolve_adapter_path(run_dir / A.ADAPTER_DIR) == run_dir / A.ADAPTER_DIR
    for bad in (run_dir / A.METRICS, "./no/such/folder", "not a ref"):
        with pytest.raises(HubError) as err:
            resolve_adapter_path(bad)
        assert err.value.exit_code == 2


# --- failures: clear errors, exit codes, nothing lost ------------------------------------------


@pytest.mark.parametrize(
    "who, repo, exit_code, message",
    [
        (None, "alice/tiny", 2, "no Hugging Face token found"),
        ("wrong", "alice/tiny", 2, "token was rejected"),
        ("alice", "bob/tiny", 2, "neither your user (alice) nor one of your organizations"),
        ("alice", "readers/tiny", 2, "which cannot write"),
        ("alice_read", "alice/tiny", 2, "the token is read-only"),
        ("alice", "not-a-repo-id", 2, "is not a Hub repository id"),
    ],
)
def test_push_refused_before_upload(hub_server, run_dir, who, repo, exit_code, message):
    token = {None: None, "wrong": "hf_" + "x" * 34}.get(who, hub_server.tokens.get(who or ""))
    result = cli("push", str(run_dir), "--repo-id", repo, "--endpoint", hub_server.endpoint, token=token)
    assert result.exit_code == exit_code and message in result.output, result.output
    assert "hint:" in result.output and "Traceback" not in result.output
    assert not any(method == "POST" for method, _ in hub_server.requests), hub_server.requests
    assert_no_token(hub_server, result.output)


def test_a_403_from_the_hub_itself_is_explained(hub_server, run_dir, monkeypatch):
    monkeypatch.setattr(
        "lora_adapt.hub.transfer.check_write_access", lambda *a, **k: "alice"
    )  # skip the pre-check
    result = cli(
        "push",
        str(run_dir),
        "--repo-id",
        "bob/x",
        "--endpoint",
        hub_server.endpoint,
        token=hub_server.tokens["alice"],
    )
    assert result.exit_code == 2 and "permission denied for bob/x (403)" in result.output, result.output


def test_check_write_access_returns_user(hub_server):
    assert (
        check_write_access("acme/x", endpoint=hub_server.endpoint, token=hub_server.tokens["alice"])
        == "alice"
    )


def test_unreachable_endpoint_says_where(hub_server, run_dir):
    result = cli(
        "push",
        str(run_dir),
        "--repo-id",
        "alice/tiny",
        "--endpoint",
        "http://127.0.0.1:9",
        token=hub_server.tokens["alice"],
    )
    assert result.exit_code == 1 and "network failure" in result.output and "HF_ENDPOINT" in result.output


@pytest.mark.parametrize("fault", ["fail_uploads", "fail_commits"])
def test_network_failure_mid_push_loses_nothing_and_can_be_repeated(hub_server, run_dir, fault, monkeypatch):
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(
        hf_http, "time", SimpleNamespace(sleep=lambda s: None, time=time.time)
    )  # no backoff waits
    token, before = hub_server.tokens["alice"], tree_hashes(run_dir)
    setattr(hub_server, fault, 100)
    args = ("push", str(run_dir), "--repo-id", "acme/flaky", "--endpoint", hub_server.endpoint)
    failed = cli(*args, token=token)
    assert failed.exit_code == 1 and "network failure while pushing to acme/flaky" in failed.output, (
        failed.output
    )
    assert "run again" in failed.output
    # the push created the repository: it is deleted again, so nothing empty looks published
    assert "acme/flaky, created by this push, was deleted again" in failed.output
    assert tree_hashes(run_dir) == before and "acme/flaky" not in hub_server.state.repos
    setattr(hub_server, fault, 0)
    retried = cli(*args, token=token)
    assert retried.exit_code == 0, retried.output
    assert (
        hub_server.files("acme/flaky")[A.ADAPTER_WEIGHTS]
        == (run_dir / A.ADAPTER_DIR / A.ADAPTER_WEIGHTS).read_bytes()
    )
    assert tree_hashes(run_dir) == before
    assert_no_token(hub_server, failed.output, retried.output, folder=run_dir)


def test_a_failed_push_into_an_existing_repository_leaves_it_as_it_was(hub_server, run_dir, monkeypatch):
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http, "time", SimpleNamespace(sleep=lambda s: None, time=time.time))
    token = hub_server.tokens["alice"]
    args = ("push", str(run_dir), "--repo-id", "alice/kept", "--endpoint", hub_server.endpoint)
    assert cli(*args, token=token).exit_code == 0
    commits = hub_server.commits("alice/kept")
    hub_server.fail_commits = 100
    failed = cli(*args, "--revision", "other", token=token)
    assert failed.exit_code == 1 and "deleted" not in failed.output, failed.output
    assert hub_server.commits("alice/kept") == commits


def test_a_hub_that_never_answers_times_out_after_the_configured_retries(hub_server, run_dir):
    # hub_server: the client online, as for a real Hub (its own server is not used)
    with SilentServer() as silent:
        result = cli(
            "push", str(run_dir), "--repo-id", "alice/tiny", "--endpoint", silent.endpoint,
            "--timeout", "1", "--retries", "1", token="hf_not_checked",
        )  # fmt: skip
        attempts = silent.connections
    assert result.exit_code == 1, result.output
    assert (
        f"the Hub at {silent.endpoint} did not answer within 1 s while checking your token (2 attempts)"
        in (result.output)
    )
    assert "--timeout" in result.output and attempts == 2  # one call, one retry, then a clear error


def test_pull_from_a_hub_that_never_answers_times_out(hub_server, tmp_path):
    with SilentServer() as silent:
        result = cli("pull", "alice/tiny", "--endpoint", silent.endpoint, "--timeout", "1", "--retries", "0")
        attempts = silent.connections
    assert (
        result.exit_code == 1 and "did not answer within 1 s while pulling alice/tiny@main" in result.output
    )
    assert attempts == 1


def test_a_run_that_publishes_to_a_hub_that_never_answers_stops_before_loading(
    hub_server, tiny_llama_dir, tmp_path
):
    with SilentServer() as silent:
        recipe = _publish_recipe(tmp_path, tiny_llama_dir, silent.endpoint, "alice/pub")
        result = cli(
            "run", str(recipe), "--set", "output.publish.timeout=1", "--set", "output.publish.retries=0",
            token="hf_not_checked",
        )  # fmt: skip
    assert result.exit_code == 1 and "did not answer within 1 s" in result.output, result.output
    assert "model:" not in result.output and not (tmp_path / "runs").exists()


def test_invalid_model_card_is_rejected_before_upload(hub_server, run_dir, tmp_path):
    import shutil

    run = Path(shutil.copytree(run_dir, tmp_path / "bad"))
    manifest = A.read_json(run / A.MANIFEST)
    manifest["base_model"]["hub_id"] = "/models/tiny-llama"  # a local path where a Hub id belongs
    A.atomic_write_json(run / A.MANIFEST, manifest)
    result = cli(
        "push",
        str(run),
        "--repo-id",
        "alice/bad",
        "--endpoint",
        hub_server.endpoint,
        token=hub_server.tokens["alice"],
    )
    assert (
        result.exit_code == 2 and "model card is invalid" in result.output and "base_model" in result.output
    )
    assert hub_server.requests == [] and "alice/bad" not in hub_server.state.repos


def test_push_needs_a_finished_run(hub_server, tmp_path):
    (tmp_path / "half.incomplete").mkdir()
    result = cli(
        "push",
        str(tmp_path / "half.incomplete"),
        "--repo-id",
        "alice/x",
        "--endpoint",
        hub_server.endpoint,
        token=hub_server.tokens["alice"],
    )
    assert result.exit_code == 2 and "not a finished run" in result.output


def test_pull_unknown_repo_and_revision(hub_server, run_dir, tmp_path):
    token = hub_server.tokens["alice"]
    missing = cli(
        "pull", "acme/nothing", "--endpoint", hub_server.endpoint, "--out", str(tmp_path / "a"), token=token
    )
    assert missing.exit_code == 2 and "not found" in missing.output
    assert (
        cli(
            "push", str(run_dir), "--repo-id", "alice/r", "--endpoint", hub_server.endpoint, token=token
        ).exit_code
        == 0
    )
    bad_rev = cli(
        "pull", "alice/r@nope", "--endpoint", hub_server.endpoint, "--out", str(tmp_path / "b"), token=token
    )
    assert bad_rev.exit_code == 2 and "revision not found" in bad_rev.output


def test_private_repo_is_not_readable_by_others(hub_server, run_dir, tmp_path):
    alice, bob = hub_server.tokens["alice"], hub_server.tokens["bob"]
    assert (
        cli(
            "push", str(run_dir), "--repo-id", "alice/secret", "--endpoint", hub_server.endpoint, token=alice
        ).exit_code
        == 0
    )
    assert hub_server.state.repos["alice/secret"].private
    result = cli(
        "pull", "alice/secret", "--endpoint", hub_server.endpoint, "--out", str(tmp_path / "x"), token=bob
    )
    assert result.exit_code == 2 and "not found, or private" in result.output
    json.dumps(hub_server.requests)  # the log is plain data


# --- `run` with output.publish ------------------------------------------------------------------


def _publish_recipe(tmp_path: Path, model_dir: Path, endpoint: str, repo_id: str) -> Path:
    rows = [{"prompt": f"Ticket {i} is about", "completion": f" topic {i % 4}."} for i in range(24)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "name": "pub",
        "model": {"name_or_path": str(model_dir)},
        "adapter": {"rank": 4, "alpha": 8, "dropout": 0.0},
        "data": {
            "path": str(tmp_path / "train.jsonl"),
            "max_seq_length": 32,
            "split": {"validation": 0, "test": 0},
        },
        "evaluation": {"enabled": False, "perplexity": False, "baselines": []},
        "training": {"max_steps": 2, "batch_size": 4, "logging_steps": 1, "progress_bar": False},
        "output": {
            "dir": str(tmp_path / "runs"),
            "license": "apache-2.0",
            "publish": {"repo_id": repo_id, "endpoint": endpoint, "revision": "run-1"},
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_run_refuses_to_start_when_it_could_not_publish(hub_server, tiny_llama_dir, tmp_path):
    recipe = _publish_recipe(tmp_path, tiny_llama_dir, hub_server.endpoint, "bob/pub")
    result = cli("run", str(recipe), token=hub_server.tokens["alice"])
    assert result.exit_code == 2 and "cannot publish to bob/pub" in result.output, result.output
    assert not (tmp_path / "runs").exists()  # refused before loading anything


def test_run_publishes_at_the_end(hub_server, tiny_llama_dir, tmp_path):
    recipe = _publish_recipe(tmp_path, tiny_llama_dir, hub_server.endpoint, "acme/pub")
    result = cli("run", str(recipe), token=hub_server.tokens["alice"])
    assert result.exit_code == 0, result.output
    files = hub_server.files("acme/pub", "run-1")
    run = tmp_path / "runs" / "pub"
    assert files[A.ADAPTER_WEIGHTS] == (run / A.ADAPTER_DIR / A.ADAPTER_WEIGHTS).read_bytes()
    assert validate_model_card(files[A.MODEL_CARD].decode())["license"] == "apache-2.0"
    assert_no_token(hub_server, result.output, folder=run)


def test_a_run_whose_push_fails_keeps_the_push_errors_exit_code_and_says_how_to_retry(
    hub_server, tiny_llama_dir, tmp_path, monkeypatch
):
    import lora_adapt.hub as hub

    recipe = _publish_recipe(tmp_path, tiny_llama_dir, hub_server.endpoint, "alice/pub")
    token = hub_server.tokens["alice"]
    real_push = hub.push_run

    def push_after_the_token_was_revoked(*args, **kwargs):  # checked at the start, gone by the end
        hub_server.state.tokens.pop(token)
        return real_push(*args, **kwargs)

    monkeypatch.setattr(hub, "push_run", push_after_the_token_was_revoked)
    result = cli("run", str(recipe), token=token)
    run = tmp_path / "runs" / "pub"
    assert result.exit_code == 2, result.output  # the token must be fixed: the HubError's own code
    assert "Traceback" not in result.output
    assert f"the run itself is complete at {run}" in result.output
    assert (
        f"lora-adapt push {run} --repo-id alice/pub --revision run-1 --endpoint {hub_server.endpoint}"
        in result.output
    )
    assert (run / A.ADAPTER_DIR / A.ADAPTER_WEIGHTS).is_file() and "alice/pub" not in hub_server.state.repos
    assert_no_token(hub_server, result.output, folder=run)
