"""The data behind tests/hub_server.py: tokens, repositories (branches -> commits -> files), LFS
objects, and the few checks the Hub runs. Plain Python, no HTTP."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

LFS_PATTERNS = (
    "*.safetensors",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.h5",
    "*.onnx",
    "*.gguf",
    "*.msgpack",
    "*.model",
)
LFS_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
WRITE_ROLES = ("write", "admin", "contributor")


class HubHTTPError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


@dataclass(frozen=True)
class TokenInfo:
    user: str
    orgs: dict[str, str] = field(
        default_factory=dict
    )  # org name -> role in org (read/contributor/write/admin)
    role: str = "write"  # token role: "read" or "write"


@dataclass(frozen=True)
class Blob:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n".encode()

    @property
    def git_oid(self) -> str:
        content = self.pointer if self.lfs else self.data
        return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid


@dataclass
class Repo:
    repo_id: str
    private: bool
    created: str
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit sha
    commits: dict[str, dict[str, Blob]] = field(default_factory=dict)  # commit sha -> {path: blob}
    messages: dict[str, str] = field(default_factory=dict)

    def resolve(self, rev: str) -> str:
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.commits:
            return rev
        raise HubHTTPError(404, f"Invalid rev id: {rev}", "RevisionNotFound")


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class HubState:
    """Repositories, LFS objects, tokens and the request log, behind one lock."""

    def __init__(self, tokens: dict[str, TokenInfo], lfs: bool = True):
        self.tokens = tokens
        self.lfs = lfs
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail_uploads = 0
        self.fail_commits = 0
        self.lock = threading.RLock()
        self._counter = 0

    # -- auth ---------------------------------------------------------------------------------
    def writable_namespaces(self, info: TokenInfo) -> set[str]:
        if info.role != "write":
            return set()
        return {info.user} | {org for org, role in info.orgs.items() if role in WRITE_ROLES}

    def can_read(self, info: TokenInfo | None, repo: Repo) -> bool:
        if not repo.private:
            return True
        return info is not None and repo.repo_id.split("/")[0] in ({info.user} | set(info.orgs))

    def get_repo(self, repo_id: str, info: TokenInfo | None) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or not self.can_read(info, repo):
            raise HubHTTPError(401 if info is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def writable_repo(self, repo_id: str, info: TokenInfo | None) -> Repo:
        repo = self.get_repo(repo_id, info)
        if info is None or repo_id.split("/")[0] not in self.writable_namespaces(info):
            raise HubHTTPError(403, f"You don't have write access to {repo_id}")
        return repo

    # -- writes -------------------------------------------------------------------------------
    def create_repo(self, repo_id: str, private: bool, info: TokenInfo, url: str) -> Repo:
        namespace = repo_id.split("/")[0]
        if namespace not in self.writable_namespaces(info):
            raise HubHTTPError(
                403, f'You don\'t have the rights to create a model under the namespace "{namespace}"'
            )
        if repo_id in self.repos:
            raise HubHTTPError(409, "You already created this model repo", url=url)
        repo = Repo(repo_id, private, utc_now())
        self.repos[repo_id] = repo
        self.commit(
            repo, None, {".gitattributes": Blob(GITATTRIBUTES, False)}, [], "initial commit", branch="main"
        )
        return repo

    def commit(
        self,
        repo: Repo,
        parent: str | None,
        add: dict[str, Blob],
        delete: list[str],
        message: str,
        branch: str,
    ) -> str:
        files = dict(repo.commits[parent]) if parent else {}
        for path in delete:
            files = {p: b for p, b in files.items() if p != path and not p.startswith(path.rstrip("/") + "/")}
        files.update(add)
        self._counter += 1
        tree = json.dumps({p: b.git_oid for p, b in sorted(files.items())})
        sha = hashlib.sha1(f"{parent}\n{tree}\n{message}\n{self._counter}".encode()).hexdigest()
        repo.commits[sha] = files
        repo.messages[sha] = message
        repo.branches[branch] = sha
        return sha

    def upload_mode(self, path: str, size: int) -> str:
        if not self.lfs:
            return "regular"
        name = path.rsplit("/", 1)[-1]
        return (
            "lfs"
            if size >= LFS_THRESHOLD or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS)
            else "regular"
        )


def tree_entries(files: dict[str, Blob], prefix: str, recursive: bool) -> list[dict]:
    base = f"{prefix}/" if prefix else ""
    entries: dict[str, dict] = {}
    for path, blob in sorted(files.items()):
        if not path.startswith(base):
            continue
        parts = path[len(base) :].split("/")
        for depth in range(1, len(parts)):
            folder = base + "/".join(parts[:depth])
            entries.setdefault(
                folder,
                {
                    "type": "directory",
                    "oid": hashlib.sha1(folder.encode()).hexdigest(),
                    "size": 0,
                    "path": folder,
                },
            )
            if not recursive:
                break
        if len(parts) == 1 or recursive:
            entry = {"type": "file", "oid": blob.git_oid, "size": len(blob.data), "path": path}
            if blob.lfs:
                entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": len(blob.pointer)}
            entries[path] = entry
    return list(entries.values())


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def metadata_errors(meta: dict) -> list[str]:
    """A few of the checks the Hub runs on a model card's front matter."""
    errors = []
    base = meta.get("base_model")
    for value in base if isinstance(base, list) else ([base] if base is not None else []):
        if not isinstance(value, str) or not HUB_ID.match(value):
            errors.append(f'"base_model" must be a Hub model id (namespace/name), got {value!r}')
    if "license" in meta and not isinstance(meta["license"], str):
        errors.append('"license" must be a string')
    if "model-index" in meta and not isinstance(meta["model-index"], list):
        errors.append('"model-index" must be a list')
    return errors


def random_token(name: str) -> str:
    return "hf_" + hashlib.sha256(f"{name}-{time.time_ns()}".encode()).hexdigest()[:34]


def default_users() -> dict[str, TokenInfo]:
    """alice (write; org `acme` with write, org `readers` with read only), alice's read-only token, bob."""
    return {
        "alice": TokenInfo("alice", {"acme": "write", "readers": "read"}, "write"),
        "alice_read": TokenInfo("alice", {"acme": "write"}, "read"),
        "bob": TokenInfo("bob", {}, "write"),
    }
