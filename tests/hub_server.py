"""A small Hugging Face Hub-compatible HTTP server for offline tests.

It speaks the subset of the Hub protocol that ``huggingface_hub`` 2.x uses to publish and fetch a
model repository, so the real client is exercised over real HTTP on 127.0.0.1:

  GET  /api/whoami-v2                                   token -> user, orgs, token role
  POST /api/validate-yaml                               README front matter check
  POST /api/repos/create                                409 if it exists, 403 outside the token's namespaces
  DELETE /api/repos/delete                              404 if missing, 403 outside the token's namespaces
  GET  /api/models/{repo}[/revision/{rev}]              repo / revision info (sha, siblings)
  GET  /api/models/{repo}/refs                          branches
  POST /api/models/{repo}/branch/{branch}               create a branch (409 if it exists)
  POST /api/models/{repo}/preupload/{rev}               upload mode per file: "regular" or "lfs" (never xet)
  POST /api/models/{repo}/commit/{rev}                  NDJSON: inline base64 files, LFS pointers, deletions
  GET  /api/models/{repo}/tree/{rev}[/{path}]           tree listing (recursive or not)
  POST /{repo}.git/info/lfs/objects/batch               LFS batch API: basic upload + verify actions
  PUT  /_lfs/{oid}   POST /_lfs/{oid}/verify            where the batch API points uploads
  HEAD/GET /{repo}/resolve/{rev}/{path}                 X-Repo-Commit, ETag / X-Linked-Etag, X-Linked-Size

Errors carry ``X-Error-Code`` / ``X-Error-Message`` as the Hub sends them, so the client raises the
same exception types (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError...).

Faults: ``server.fail_uploads = n`` cuts the connection of the next n LFS uploads half-way through
the body; ``server.fail_commits = n`` cuts the next n commit requests (before anything is applied).
The client retries an LFS upload 5 times with backoff, so a failure that surfaces needs n > 5 (stub
``huggingface_hub.utils._http.time`` to skip the waits, as tests/test_hub.py does); commits are not retried.
``server.requests`` logs every (method, path) seen. Xet is not spoken: the client must run with
``HF_HUB_DISABLE_XET=1`` when LFS files are pushed (``serve_hub`` arranges that), or
the server can be built with ``lfs=False`` to answer "regular" for every file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml
from hub_state import (
    Blob,
    HubHTTPError,
    HubState,
    TokenInfo,
    default_users,
    metadata_errors,
    random_token,
    tree_entries,
    utc_now,
)


class HubHandler(BaseHTTPRequestHandler):
    server: HubHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def state(self) -> HubState:
        return self.server.state

    # -- plumbing -----------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self._body_cache: bytes | None = None  # one handler serves every request of a keep-alive connection
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self.state.lock:
            self.state.requests.append((method, url.path))
        try:
            for pattern, route_method, handler in ROUTES:
                match = pattern.fullmatch(url.path)
                if match and route_method in (method, "GET" if method == "HEAD" else None):
                    handler(self, **{k: unquote(v) for k, v in match.groupdict().items() if v is not None})
                    return
            raise HubHTTPError(404, f"Not found: {method} {url.path}")
        except HubHTTPError as err:
            self._error(err)
        except ConnectionError:
            self.close_connection = True

    def _error(self, err: HubHTTPError) -> None:
        self._drain()
        headers = {"X-Error-Message": err.message}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._json(err.status, {"error": err.message, **err.extra}, headers)

    def _body(self) -> bytes:
        if self._body_cache is None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self._body_cache = b"".join(self._chunks())
            else:
                self._body_cache = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return self._body_cache

    def _chunks(self) -> Iterator[bytes]:
        while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
            yield self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()

    def _drain(self) -> None:
        try:
            self._body()
        except (OSError, ValueError):
            self.close_connection = True

    def _json_body(self) -> Any:
        try:
            return json.loads(self._body() or b"null")
        except json.JSONDecodeError as exc:
            raise HubHTTPError(400, f"invalid JSON body: {exc}") from exc

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", headers.get("Content-Length", str(len(data))))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def token_info(self, required: bool = False) -> TokenInfo | None:
        auth = self.headers.get("Authorization", "")
        if not auth:
            if required:
                raise HubHTTPError(401, "Invalid credentials in Authorization header")
            return None
        info = self.state.tokens.get(auth.removeprefix("Bearer ").strip())
        if info is None:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        return info

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    # -- account ------------------------------------------------------------------------------
    def whoami(self) -> None:
        info = self.token_info(required=True)
        assert info is not None
        self._json(
            200,
            {
                "type": "user",
                "id": hashlib.md5(info.user.encode()).hexdigest()[:24],
                "name": info.user,
                "fullname": info.user.title(),
                "email": f"{info.user}@example.org",
                "emailVerified": True,
                "orgs": [
                    {"type": "org", "name": org, "fullname": org, "roleInOrg": role}
                    for org, role in info.orgs.items()
                ],
                "auth": {
                    "type": "access_token",
                    "accessToken": {"displayName": "test", "role": info.role, "createdAt": utc_now()},
                },
            },
        )

    def validate_yaml(self) -> None:
        content = (self._json_body() or {}).get("content", "")
        match = re.match(r"^\s*---\r?\n([\s\S]*?)\r?\n---[ \t]*(\r?\n|$)", content)
        errors = []
        if match:
            try:
                meta = yaml.safe_load(match.group(1)) or {}
                if not isinstance(meta, dict):
                    errors.append("metadata must be a dictionary")
                else:
                    errors += metadata_errors(meta)
            except yaml.YAMLError as exc:
                errors.append(f"invalid YAML: {exc}")
        if errors:
            self._json(400, {"errors": [{"message": e} for e in errors], "warnings": []})
        else:
            self._json(
                200,
                {"errors": [], "warnings": [] if match else [{"message": "empty or missing yaml metadata"}]},
            )

    # -- repositories -------------------------------------------------------------------------
    def create_repo(self) -> None:
        info = self.token_info(required=True)
        body = self._json_body() or {}
        if body.get("type", "model") != "model":
            raise HubHTTPError(400, "this test server only hosts model repos")
        repo_id = f"{body.get('organization') or info.user}/{body['name']}"
        private = body.get("private", body.get("visibility") == "private")
        with self.state.lock:
            self.state.create_repo(repo_id, bool(private), info, f"{self.endpoint}/{repo_id}")
        self._json(200, {"url": f"{self.endpoint}/{repo_id}", "name": repo_id, "id": repo_id})

    def delete_repo(self) -> None:
        info = self.token_info(required=True)
        body = self._json_body() or {}
        repo_id = f"{body.get('organization') or info.user}/{body['name']}"
        with self.state.lock:
            self.state.writable_repo(repo_id, info)
            del self.state.repos[repo_id]
        self._json(200, {})

    def repo_info(self, repo_id: str, rev: str = "main") -> None:
        with self.state.lock:
            repo = self.state.get_repo(repo_id, self.token_info())
            sha = repo.resolve(rev)
            files = repo.commits[sha]
        self._json(
            200,
            {
                "id": repo_id,
                "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
                "author": repo_id.split("/")[0],
                "sha": sha,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "createdAt": repo.created,
                "lastModified": utc_now(),
                "siblings": [{"rfilename": p} for p in sorted(files)],
            },
        )

    def refs(self, repo_id: str) -> None:
        with self.state.lock:
            repo = self.state.get_repo(repo_id, self.token_info())
            branches = [
                {"name": b, "ref": f"refs/heads/{b}", "targetCommit": s} for b, s in repo.branches.items()
            ]
        self._json(200, {"branches": branches, "converts": [], "tags": [], "pullRequests": []})

    def create_branch(self, repo_id: str, branch: str) -> None:
        start = (self._json_body() or {}).get("startingPoint") or "main"
        with self.state.lock:
            repo = self.state.writable_repo(repo_id, self.token_info(required=True))
            if branch in repo.branches:
                raise HubHTTPError(409, f"Branch {branch} already exists")
            repo.branches[branch] = repo.resolve(start)
        self._json(200, {})

    # -- upload -------------------------------------------------------------------------------
    def preupload(self, repo_id: str, rev: str) -> None:
        body = self._json_body() or {}
        with self.state.lock:
            repo = self.state.writable_repo(repo_id, self.token_info(required=True))
            current = repo.commits[repo.resolve(rev)]
            answer = []
            for item in body.get("files", []):
                mode = self.state.upload_mode(item["path"], int(item["size"]))
                blob = current.get(item["path"])
                oid = None if blob is None else (blob.sha256 if mode == "lfs" else blob.git_oid)
                answer.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._json(200, {"files": answer, "commitOid": repo.branches.get(rev, rev)})

    def lfs_batch(self, repo_id: str) -> None:
        body = self._json_body() or {}
        with self.state.lock:
            self.state.writable_repo(repo_id, self.token_info(required=True))
            objects = []
            for obj in body.get("objects", []):
                entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if obj["oid"] not in self.state.lfs_objects:
                    entry["actions"] = {
                        "upload": {
                            "href": f"{self.endpoint}/_lfs/{obj['oid']}",
                            "header": {},
                            "expires_in": 3600,
                        },
                        "verify": {"href": f"{self.endpoint}/_lfs/{obj['oid']}/verify", "header": {}},
                    }
                objects.append(entry)
        self._json(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def lfs_put(self, oid: str) -> None:
        with self.state.lock:
            fail = self.state.fail_uploads > 0
            self.state.fail_uploads -= int(fail)
        if fail:  # a network failure half-way through the upload: read some bytes, then hang up
            self.rfile.read(int(self.headers.get("Content-Length") or 0) // 2)
            self.close_connection = True
            raise ConnectionError("fault injected: upload cut")
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubHTTPError(400, "uploaded content does not match its sha256 oid")
        with self.state.lock:
            self.state.lfs_objects[oid] = data
        self._send(200, b"", {})

    def lfs_verify(self, oid: str) -> None:
        body = self._json_body() or {}
        data = self.state.lfs_objects.get(oid)
        if data is None or len(data) != body.get("size"):
            raise HubHTTPError(404, f"LFS object {oid} not found")
        self._json(200, {"success": True})

    def commit(self, repo_id: str, rev: str) -> None:
        with self.state.lock:
            fail = self.state.fail_commits > 0
            self.state.fail_commits -= int(fail)
        if fail:
            self.close_connection = True
            raise ConnectionError("fault injected: commit cut")
        if self.query.get("create_pr"):
            raise HubHTTPError(400, "pull requests are not supported by this test server")
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        with self.state.lock:
            repo = self.state.writable_repo(repo_id, self.token_info(required=True))
            if rev not in repo.branches:
                raise HubHTTPError(404, f"Invalid rev id: {rev} (commits go to a branch)", "RevisionNotFound")
            header, add, delete = self._parse_commit(lines)
            parent = repo.branches[rev]
            if header.get("parentCommit") not in (None, parent):
                raise HubHTTPError(412, "A commit has happened since. Please refresh and try again.")
            sha = self.state.commit(repo, parent, add, delete, header.get("summary", ""), branch=rev)
        self._json(
            200,
            {
                "success": True,
                "commitOid": sha,
                "commitUrl": f"{self.endpoint}/{repo_id}/commit/{sha}",
                "hookOutput": "",
                "pullRequestUrl": None,
            },
        )

    def _parse_commit(self, lines: list[dict]) -> tuple[dict, dict[str, Blob], list[str]]:
        header: dict = {}
        add: dict[str, Blob] = {}
        delete: list[str] = []
        for item in lines:
            key, value = item.get("key"), item.get("value", {})
            if key == "header":
                header = value
            elif key == "file":
                add[value["path"]] = Blob(base64.b64decode(value["content"]), False)
            elif key == "lfsFile":
                data = self.state.lfs_objects.get(value["oid"])
                if data is None:
                    raise HubHTTPError(
                        400, f"LFS pointer for {value['path']} points to an object that was never uploaded"
                    )
                add[value["path"]] = Blob(data, True)
            elif key in ("deletedFile", "deletedFolder"):
                delete.append(value["path"])
            else:
                raise HubHTTPError(400, f"unknown commit operation {key!r}")
        return header, add, delete

    # -- download -----------------------------------------------------------------------------
    def tree(self, repo_id: str, rev: str, path: str = "") -> None:
        recursive = self.query.get("recursive", "false").lower() in ("1", "true")
        with self.state.lock:
            files = self.state.get_repo(repo_id, self.token_info()).commits[self._resolve(repo_id, rev)]
        entries = tree_entries(files, path.strip("/"), recursive)
        if path and not entries and path.strip("/") not in files:
            raise HubHTTPError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        self._json(200, entries)

    def resolve(self, repo_id: str, rev: str, path: str) -> None:
        with self.state.lock:
            sha = self._resolve(repo_id, rev)
            blob = self.state.repos[repo_id].commits[sha].get(path)
        headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
        if blob is None:
            self._send(
                404, b"", {**headers, "X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"}
            )
            return
        headers["ETag"] = f'"{blob.etag}"'
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(len(blob.data))})
        data, status = blob.data, 200
        start = _range_start(self.headers.get("Range"))
        if start:
            data, status = data[start:], 206
            headers["Content-Range"] = f"bytes {start}-{len(blob.data) - 1}/{len(blob.data)}"
        self._send(status, data, {**headers, "Content-Type": "application/octet-stream"})

    def _resolve(self, repo_id: str, rev: str) -> str:
        return self.state.get_repo(repo_id, self.token_info()).resolve(rev)

    def no_xet(self, **_: str) -> None:
        raise HubHTTPError(501, "this test Hub does not speak Xet: run the client with HF_HUB_DISABLE_XET=1")


def _range_start(header: str | None) -> int:
    match = re.fullmatch(r"\s*bytes=(\d+)-\s*", header or "")
    return int(match.group(1)) if match else 0


_REPO = r"(?P<repo_id>[^/]+/[^/]+?)"
ROUTES = [
    (re.compile(p), m, h)
    for p, m, h in [
        (r"/api/whoami-v2", "GET", HubHandler.whoami),
        (r"/api/validate-yaml", "POST", HubHandler.validate_yaml),
        (r"/api/repos/create", "POST", HubHandler.create_repo),
        (r"/api/repos/delete", "DELETE", HubHandler.delete_repo),
        (rf"/api/models/{_REPO}", "GET", HubHandler.repo_info),
        (rf"/api/models/{_REPO}/revision/(?P<rev>[^/]+)", "GET", HubHandler.repo_info),
        (rf"/api/models/{_REPO}/refs", "GET", HubHandler.refs),
        (rf"/api/models/{_REPO}/branch/(?P<branch>[^/]+)", "POST", HubHandler.create_branch),
        (rf"/api/models/{_REPO}/preupload/(?P<rev>[^/]+)", "POST", HubHandler.preupload),
        (rf"/api/models/{_REPO}/commit/(?P<rev>[^/]+)", "POST", HubHandler.commit),
        (rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", "GET", HubHandler.tree),
        (rf"/api/models/{_REPO}/xet-(?P<kind>read|write)-token/(?P<rev>.+)", "GET", HubHandler.no_xet),
        (rf"/{_REPO}\.git/info/lfs/objects/batch", "POST", HubHandler.lfs_batch),
        (r"/_lfs/(?P<oid>[0-9a-f]{64})", "PUT", HubHandler.lfs_put),
        (r"/_lfs/(?P<oid>[0-9a-f]{64})/verify", "POST", HubHandler.lfs_verify),
        (rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "GET", HubHandler.resolve),
    ]
]


class HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: HubState):
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.state = state
        self.endpoint = f"http://127.0.0.1:{self.server_address[1]}"


class HubServer:
    """The server running in a thread. ``endpoint`` is its base URL; ``tokens`` maps a user name to its token."""

    def __init__(self, users: dict[str, TokenInfo] | None = None, *, lfs: bool = True):
        users = users if users is not None else default_users()
        self.tokens = {name: random_token(name) for name in users}
        self.state = HubState({self.tokens[name]: info for name, info in users.items()}, lfs=lfs)
        self._httpd = HubHTTPServer(self.state)
        self.endpoint = self._httpd.endpoint
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # conveniences for tests
    @property
    def requests(self) -> list[tuple[str, str]]:
        return self.state.requests

    @property
    def fail_uploads(self) -> int:
        return self.state.fail_uploads

    @fail_uploads.setter
    def fail_uploads(self, n: int) -> None:
        self.state.fail_uploads = n

    @property
    def fail_commits(self) -> int:
        return self.state.fail_commits

    @fail_commits.setter
    def fail_commits(self, n: int) -> None:
        self.state.fail_commits = n

    def commits(self, repo_id: str) -> list[str]:
        """Commit shas of a repo, oldest first (the creation commit included)."""
        repo = self.state.repos.get(repo_id)
        return list(repo.commits) if repo else []

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.state.repos[repo_id]
        return {p: b.data for p, b in repo.commits[repo.resolve(revision)].items()}


@contextmanager
def serve_hub(
    monkeypatch: pytest.MonkeyPatch, users: dict[str, TokenInfo] | None = None, *, lfs: bool = True
) -> Iterator[HubServer]:
    """A fresh Hub on 127.0.0.1 with the client configured to reach it: no Xet, no telemetry, online,
    no token from the environment or the user's token file. For a fixture::

        @pytest.fixture
        def hub_server(monkeypatch):
            with serve_hub(monkeypatch) as server:
                yield server

    ``server.tokens``: {"alice": write token, "alice_read": alice's read-only token, "bob": write token}."""
    import huggingface_hub.constants as hf_constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", "/nonexistent/lora-adapt-tests/token")
    with HubServer(users, lfs=lfs) as server:
        yield server


class SilentServer:
    """A loopback endpoint that accepts connections and never answers (a hung Hub or proxy).

    ``connections`` counts the connections accepted, i.e. the attempts a client made."""

    def __init__(self) -> None:
        import socket

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.endpoint = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.connections = 0
        self._held: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.connections += 1
            self._held.append(conn)  # keep it open, read nothing, answer nothing

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._sock.close()
