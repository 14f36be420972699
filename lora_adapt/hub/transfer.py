"""Pushing a run directory to the Hub and pulling adapters back, pinned to a revision.

A push never touches the run directory: the files to upload are linked into a temporary folder
(adapter or merged weights at the repository root, where PEFT and transformers look for them, plus
the rendered model card, metrics.json and recipe.resolved.yaml) and handed to ``upload_folder``.
A push that fails half-way leaves the run directory as it was and can simply be run again; files
already uploaded are not sent twice.

Adapter references (``resolve_adapter_path``), anywhere an adapter path is accepted:

  runs/my-run                      a run directory (its ``adapter/`` is used)
  runs/my-run/adapter              an adapter directory (``adapter_config.json`` inside)
  hub:acme/clinical-lora@v2        a Hub repo pinned to a branch, tag or commit sha
  acme/clinical-lora[@rev]         the same without the prefix, when no local folder has that name
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import artifacts as A
from ..errors import HubError
from ..rundir import read_run
from .access import (
    check_write_access,
    parse_repo_id,
    require_token,
    resolve_endpoint,
    resolve_token,
)
from .card import render_model_card
from .network import HubNetwork, apply_timeouts, hub_call, hub_error
from .validation import validate_model_card

HUB_PREFIX = "hub:"
ADAPTER_REF = re.compile(
    r"^(?:hub:)?(?P<repo_id>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[^\s@]+))?$"
)
REF_SYNTAX = (
    "give a run directory, an adapter directory (with adapter_config.json), or a Hub reference "
    "hub:NAMESPACE/NAME[@REVISION]"
)
BRANCH = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*\.lock$)[A-Za-z0-9._/-]+(?<![/.])$")
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
# Weight/config files a previous push may have left at the root; removed so that an adapter pushed over
# a merged model (or the reverse) is not loaded with stale tensors next to it.
STALE_PATTERNS = [
    "*.safetensors",
    "*.safetensors.index.json",
    "*.bin",
    "*.bin.index.json",
    "*.pt",
    "*.pth",
    "adapter_config.json",
    "config.json",
    "generation_config.json",
]


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    revision: str
    commit_sha: str
    commit_url: str
    repo_url: str
    user: str

    @property
    def url(self) -> str:
        return self.repo_url if self.revision == "main" else f"{self.repo_url}/tree/{self.revision}"

    def __str__(self) -> str:
        return f"{self.url} (revision {self.revision}, commit {self.commit_sha})"


@dataclass(frozen=True)
class PullResult:
    path: Path
    repo_id: str
    revision: str
    commit_sha: str


def push_run(
    run_dir: Path,
    repo_id: str,
    *,
    private: bool = True,
    revision: str | None = None,
    merged: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
    network: HubNetwork | None = None,
) -> PushResult:
    """Publish a finished run: its adapter (or ``merged/`` model) at the repo root with a model card.

    Order: everything local first (run files, card validation), then the token's write access, then
    the transfer. Nothing is uploaded if any check fails; a repository this push created is deleted
    again when the upload fails (or, if that fails too, the error says it is there and empty).
    ``network``: timeout and retries of each Hub call (default: 60 s, 3 retries)."""
    parse_repo_id(repo_id)
    run_dir = Path(run_dir)
    payload = _payload_dir(run_dir, merged)
    branch = _branch(revision)
    card = render_model_card(run_dir, repo_id=repo_id, merged=merged, revision=branch)
    validate_model_card(card)
    endpoint, token = resolve_endpoint(endpoint), require_token(token)
    network = network or HubNetwork()
    user = check_write_access(repo_id, endpoint=endpoint, token=token, network=network)
    with tempfile.TemporaryDirectory(prefix="lora-adapt-push-") as tmp:
        staging = _stage(run_dir, payload, card, Path(tmp))
        repo_url, commit = _upload(
            staging,
            repo_id,
            branch=branch,
            private=private,
            endpoint=endpoint,
            token=token,
            message=_commit_message(run_dir, merged),
            network=network,
        )
    return PushResult(repo_id, branch, commit.oid, commit.commit_url, str(repo_url).rstrip("/"), user)


def _branch(revision: str | None) -> str:
    branch = revision or "main"
    if COMMIT_SHA.match(branch) or not BRANCH.match(branch):
        raise HubError(
            f"cannot push to revision {branch!r}: pushes go to a branch",
            hint="give a branch name such as main or experiment-2 (it is created when missing)",
            exit_code=2,
        )
    return branch


def _payload_dir(run_dir: Path, merged: bool) -> Path:
    run_dir = read_run(run_dir).path  # refuses anything but a finished run (exit 2)
    if merged:
        folder = run_dir / A.MERGED_DIR
        if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
            raise HubError(
                f"{run_dir} has no merged model ({A.MERGED_DIR}/ with config.json and safetensors)",
                hint="merge first (output.merge: true, or `lora-adapt merge`), or push the adapter "
                "without --merged",
                exit_code=2,
            )
        return folder
    folder = run_dir / A.ADAPTER_DIR
    missing = [n for n in (A.ADAPTER_CONFIG, A.ADAPTER_WEIGHTS) if not (folder / n).is_file()]
    if missing:
        raise HubError(
            f"{folder} lacks {', '.join(missing)}",
            hint="rerun the training; nothing was uploaded",
            exit_code=2,
        )
    return folder


def _stage(run_dir: Path, payload: Path, card: str, staging: Path) -> Path:
    """Link (or copy) what is uploaded into ``staging``: payload files at the root, card, metrics, recipe."""
    for src in sorted(payload.rglob("*")):
        rel = src.relative_to(payload)
        if src.is_file() and rel.as_posix() != A.MODEL_CARD:
            _link(src, staging / rel)
    for name in (A.METRICS, A.RESOLVED_RECIPE):
        if (run_dir / name).is_file():
            _link(run_dir / name, staging / name)
    (staging / A.MODEL_CARD).write_text(card, encoding="utf-8")
    return staging


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(src.resolve(), dst)
    except OSError:  # no symlinks (some Windows setups): copy instead
        shutil.copy2(src, dst)


def _upload(
    staging: Path,
    repo_id: str,
    *,
    branch: str,
    private: bool,
    endpoint: str,
    token: str,
    message: str,
    network: HubNetwork,
):
    from huggingface_hub import HfApi

    from ..manifest import package_versions

    version = package_versions()["lora-adapt"]
    api = HfApi(endpoint=endpoint, token=token, library_name="lora-adapt", library_version=version)

    def call(fn, action: str):
        return hub_call(fn, action=action, endpoint=endpoint, network=network, repo_id=repo_id, token=token)

    existed = call(lambda: api.repo_exists(repo_id), f"looking up {repo_id}")
    repo_url = call(lambda: api.create_repo(repo_id, private=private, exist_ok=True), f"creating {repo_id}")
    try:
        if existed and private and not call(lambda: api.repo_info(repo_id), f"reading {repo_id}").private:
            raise HubError(
                f"{repo_id} already exists and is public, but a private push was asked for",
                hint="pass --public (publish.private: false) to push to it, or choose another repo id",
                exit_code=2,
            )
        if branch != "main":
            call(
                lambda: api.create_branch(repo_id, branch=branch, exist_ok=True), f"creating branch {branch}"
            )
        apply_timeouts(network)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=staging,
            revision=branch,
            commit_message=message,
            delete_patterns=STALE_PATTERNS,
        )
    except Exception as exc:
        error = hub_error(
            exc,
            action=f"pushing to {repo_id}",
            endpoint=endpoint,
            network=network,
            repo_id=repo_id,
            token=token,
        )
        if existed:
            raise error from exc
        raise _undo_creation(api, error, repo_id, str(repo_url), endpoint, network, token) from exc
    return repo_url, commit


def _undo_creation(
    api, error: HubError, repo_id: str, url: str, endpoint: str, network: HubNetwork, token: str
) -> HubError:
    """After a failed first push: delete the repository it created, so nothing empty looks published."""
    try:
        hub_call(
            lambda: api.delete_repo(repo_id, missing_ok=True),
            action=f"deleting the empty {repo_id}",
            endpoint=endpoint,
            network=HubNetwork(network.timeout, retries=1, backoff=network.backoff),
            repo_id=repo_id,
            token=token,
        )
        note = f"; {repo_id}, created by this push, was deleted again: nothing was published"
    except HubError as cleanup:
        note = (
            f"; {repo_id} was created by this push and is still there, EMPTY - nothing was published "
            f"(deleting it failed: {cleanup.message}); delete it at {url}/settings or push again"
        )
    return HubError(error.message + note, hint=error.hint, exit_code=error.exit_code)


def _commit_message(run_dir: Path, merged: bool) -> str:
    name = read_run(run_dir).name
    return f"Upload {'merged model' if merged else 'LoRA adapter'} {name} (lora-adapt)"


# --- pulling ---------------------------------------------------------------------------------


def pull_adapter(
    repo_id: str,
    *,
    revision: str | None = None,
    dest: Path | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    cache_dir: Path | None = None,
    network: HubNetwork | None = None,
) -> Path:
    """Download an adapter (or merged model) repo at ``revision`` and return its local folder.

    The revision (branch, tag or sha; default main) is resolved to a commit sha first and the files
    are fetched at that sha, so the folder is exactly one commit. ``dest``: a plain folder to write
    to; default: the Hugging Face cache."""
    return fetch_adapter(
        repo_id,
        revision=revision,
        dest=dest,
        endpoint=endpoint,
        token=token,
        cache_dir=cache_dir,
        network=network,
    ).path


def fetch_adapter(
    repo_id: str,
    *,
    revision: str | None = None,
    dest: Path | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    cache_dir: Path | None = None,
    network: HubNetwork | None = None,
) -> PullResult:
    """:func:`pull_adapter`, also returning the commit sha the revision resolved to."""
    parse_repo_id(repo_id)
    endpoint, token = resolve_endpoint(endpoint), resolve_token(token)
    from huggingface_hub import snapshot_download

    def call(fn):
        action = f"pulling {repo_id}@{revision or 'main'}"
        return hub_call(fn, action=action, endpoint=endpoint, network=network, repo_id=repo_id, token=token)

    pinned = call(lambda: _pin_revision(repo_id, revision, endpoint, token, cache_dir))
    path = call(
        lambda: snapshot_download(
            repo_id, revision=pinned, local_dir=dest, cache_dir=cache_dir, endpoint=endpoint, token=token
        )
    )
    folder = Path(path)
    if not (folder / A.ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file():
        raise HubError(
            f"{repo_id}@{revision or 'main'} holds neither an adapter ({A.ADAPTER_CONFIG}) nor a model",
            hint="check the repo id and revision",
            exit_code=2,
        )
    sha = getattr(pinned, "resolved", None) or (folder.name if COMMIT_SHA.match(folder.name) else "?")
    return PullResult(folder, repo_id, revision or "main", str(sha))


def _pin_revision(
    repo_id: str, revision: str | None, endpoint: str, token: str | None, cache_dir: Path | None
) -> str | None:
    """Resolve a branch/tag to one commit before downloading (recorded in the cache, so that the same
    reference also resolves offline later). huggingface_hub < 2 lacks this; snapshot_download pins anyway."""
    from huggingface_hub import HfApi, constants

    api = HfApi(endpoint=endpoint, token=token)
    if not hasattr(api, "resolve_revision"):  # pragma: no cover
        return revision
    return api.resolve_revision(
        repo_id, revision=revision, cache_dir=cache_dir, local_files_only=constants.is_offline_mode()
    )


def resolve_adapter_path(
    ref: str | Path, *, endpoint: str | None = None, token: str | None = None, cache_dir: Path | None = None
) -> Path:
    """A local adapter folder for ``ref`` (see the module docstring for the accepted forms)."""
    text = str(ref)
    if not text.startswith(HUB_PREFIX) and Path(text).expanduser().exists():
        return _local_adapter_dir(Path(text).expanduser())
    match = ADAPTER_REF.match(text)
    if match is None:
        raise HubError(
            f"{text!r} is neither an existing folder nor a Hub reference", hint=REF_SYNTAX, exit_code=2
        )
    try:
        return pull_adapter(
            match["repo_id"], revision=match["revision"], endpoint=endpoint, token=token, cache_dir=cache_dir
        )
    except HubError as exc:
        if text.startswith(HUB_PREFIX):
            raise
        raise HubError(
            f"{exc.message} (and there is no local folder {text!r})", hint=exc.hint, exit_code=exc.exit_code
        ) from exc


def _local_adapter_dir(path: Path) -> Path:
    for folder in (path, path / A.ADAPTER_DIR):
        if (folder / A.ADAPTER_CONFIG).is_file():
            return folder
    raise HubError(
        f"{path} is not an adapter: no {A.ADAPTER_CONFIG} in it or in {A.ADAPTER_DIR}/",
        hint=REF_SYNTAX,
        exit_code=2,
    )
