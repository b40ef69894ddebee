"""A small Hub on 127.0.0.1 that the real ``huggingface_hub`` client can push to and pull from.

It answers the endpoints the client uses for ``create_repo``, ``create_commit`` (preupload, regular and
LFS files, README YAML validation) and ``hf_hub_download`` (``resolve`` by branch or commit, with the Hub's
error codes), with tokens and private repos, all in memory. The tests use it to try every Hub path and
failure without a network; a user can use it to rehearse ``msrnn-zoo push`` / ``pull`` offline::

    python -m msrnn_zoo.hubserver --port 8765 --token secret --user me
    HF_ENDPOINT=http://127.0.0.1:8765 HF_TOKEN=secret msrnn-zoo push runs/a --repo-id me/ms-convlstm-mm

It is not a Hub: no git, no web pages, no xet storage (files are stored regular, or LFS over the basic
transfer when ``lfs_patterns`` asks for it and the client has xet disabled).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fnmatch
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a file's bytes: what the Hub sends as the ETag of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class StoredFile:
    data: bytes
    lfs: bool

    @property
    def oid(self) -> str:
        return hashlib.sha256(self.data).hexdigest() if self.lfs else git_blob_sha1(self.data)


@dataclass
class Commit:
    sha: str
    parent: str | None
    message: str
    files: dict[str, StoredFile]


@dataclass
class Repo:
    owner: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        return self.commits.get(revision)


class HubState:
    """Repos, tokens and fault switches of one server; safe to use from the handler threads."""

    def __init__(self, tokens: dict[str, str] | None = None, lfs_patterns: tuple[str, ...] = ()) -> None:
        self.tokens = dict(tokens or {})  # token -> user
        self.lfs_patterns = lfs_patterns
        self.repos: dict[str, Repo] = {}
        self.lfs_store: dict[str, bytes] = {}
        self.corrupt: set[tuple[str, str]] = set()
        """(repo id, path) whose downloads are served with flipped bytes (same length, same ETag)."""
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self._counter = 0

    def add_commit(self, repo: Repo, branch: str, files: dict[str, StoredFile], message: str) -> Commit:
        with self.lock:
            self._counter += 1
            parent = repo.branches.get(branch)
            digest = hashlib.sha1(f"{parent}:{message}:{self._counter}".encode())
            for path in sorted(files):
                digest.update(f"{path}:{files[path].oid}".encode())
            commit = Commit(digest.hexdigest(), parent, message, files)
            repo.commits[commit.sha] = commit
            repo.branches[branch] = commit.sha
            return commit

    def create_repo(self, repo_id: str, owner: str, private: bool = False) -> Repo:
        repo = Repo(owner=owner, private=private)
        self.repos[repo_id] = repo
        self.add_commit(repo, "main", {}, "initial commit")
        return repo

    def put_files(self, repo_id: str, files: dict[str, bytes], *, private: bool = False,
                  message: str = "upload") -> str:
        """Seed a repo directly (tests): create it if needed, commit ``files`` to main, return the commit."""
        repo = self.repos.get(repo_id) or self.create_repo(repo_id, repo_id.split("/")[0], private)
        current = dict(repo.resolve("main").files)  # type: ignore[union-attr]
        for path, data in files.items():
            current[path] = StoredFile(data, self._is_lfs(path))
        return self.add_commit(repo, "main", current, message).sha

    def _is_lfs(self, path: str) -> bool:
        return any(fnmatch.fnmatch(path, pattern) for pattern in self.lfs_patterns)


class _Handler(BaseHTTPRequestHandler):
    state: HubState
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # the tests' output stays clean
        pass

    # ------------------------------------------------------------------ plumbing
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json", head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode())

    def _error(self, status: int, code: str | None, message: str, head: bool = False) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, json.dumps({"error": message}).encode(), headers, head=head)

    def _body(self) -> bytes:
        return self._request_body

    def _user(self) -> tuple[str | None, bool]:
        """(user, bad token): who the Authorization header names, and whether it named nobody."""
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            return None, False
        user = self.state.tokens.get(auth[len("Bearer "):])
        return user, user is None

    def _endpoint(self) -> str:
        return f"http://{self.headers.get('Host')}"

    def _readable(self, repo_id: str, head: bool = False) -> Repo | None:
        """The repo if this request may read it; otherwise the error is sent and None returned."""
        user, bad = self._user()
        if bad:
            self._error(401, None, "Invalid credentials in Authorization header", head)
            return None
        repo = self.state.repos.get(repo_id)
        if repo is None or (repo.private and user != repo.owner):
            # As the Hub: an anonymous caller cannot tell a private repo from a missing one (401 for both).
            status = 404 if user is not None else 401
            self._error(status, "RepoNotFound", "Repository not found", head)
            return None
        return repo

    def _writable(self, repo_id: str) -> Repo | None:
        user, bad = self._user()
        if user is None:
            self._error(401, None, "Invalid credentials in Authorization header" if bad else
                        "You must be authenticated to write")
            return None
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        if repo.owner != user:
            self._error(403, None, f"You don't have the rights to write to {repo_id}")
            return None
        return repo

    # ------------------------------------------------------------------ routing
    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def _route(self, method: str) -> None:
        path = urlsplit(self.path).path
        self.state.requests.append((method, path))
        # The body is read before any answer: one refused unread (a 401 to a create without a token) stayed in the
        # kept-alive connection, and the client's next request on it was read from there (HTTP 501).
        length = int(self.headers.get("Content-Length") or 0)
        self._request_body = self.rfile.read(length) if length else b""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        try:
            if method == "POST" and path == "/api/repos/create":
                return self._create_repo()
            if method == "POST" and path == "/api/validate-yaml":
                return self._validate_yaml()
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                repo_id = "/".join(parts[2:4])
                rest = parts[4:]
                if method == "POST" and rest[:1] == ["preupload"] and len(rest) == 2:
                    return self._preupload(repo_id, rest[1])
                if method == "POST" and rest[:1] == ["commit"] and len(rest) == 2:
                    return self._commit(repo_id, rest[1])
                if method == "GET" and (not rest or (rest[0] == "revision" and len(rest) == 2)):
                    return self._model_info(repo_id, rest[1] if rest else "main")
            if method == "POST" and len(parts) == 6 and parts[1].endswith(".git") and parts[2:] == [
                    "info", "lfs", "objects", "batch"]:
                return self._lfs_batch(f"{parts[0]}/{parts[1][:-len('.git')]}")
            if method == "PUT" and parts[:1] == ["lfs-upload"] and len(parts) == 2:
                return self._lfs_upload(parts[1])
            if method == "POST" and parts[:1] == ["lfs-verify"] and len(parts) == 2:
                return self._lfs_verify(parts[1])
            if method in ("HEAD", "GET") and len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), head=method == "HEAD")
        except Exception as exc:  # a bug here must show as a 500, not a hung client
            return self._error(500, None, f"fake hub: {type(exc).__name__}: {exc}")
        self._error(404, None, f"no route for {method} {path}", head=method == "HEAD")

    # ------------------------------------------------------------------ endpoints
    def _create_repo(self) -> None:
        user, bad = self._user()
        if user is None:
            return self._error(401, None, "Invalid credentials in Authorization header" if bad else
                               "You must be authenticated to create a repo")
        payload = json.loads(self._body() or b"{}")
        owner = payload.get("organization") or user
        repo_id = f"{owner}/{payload['name']}"
        url = f"{self._endpoint()}/{repo_id}"
        if owner != user:
            return self._error(403, None, f"You don't have the rights to create a repo under {owner}")
        if repo_id in self.state.repos:
            return self._json(409, {"error": "You already created this model repo", "url": url})
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        self.state.create_repo(repo_id, owner, private)
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self) -> None:
        from huggingface_hub import ModelCard
        from huggingface_hub.repocard_data import model_index_to_eval_results

        payload = json.loads(self._body() or b"{}")
        errors = []
        try:
            card = ModelCard(payload.get("content", ""), ignore_metadata_errors=False)
            index = card.data.to_dict().get("model-index")
            if index is not None:
                _, results = model_index_to_eval_results(index)
                for result in results:
                    if not isinstance(result.metric_value, (int, float)):
                        errors.append(f"model-index: {result.metric_type} has a non-numeric value")
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        if errors:
            return self._json(400, {"errors": [{"message": e} for e in errors]})
        self._json(200, {"errors": [], "warnings": []})

    def _preupload(self, repo_id: str, revision: str) -> None:
        repo = self._writable(repo_id)
        if repo is None:
            return
        commit = repo.resolve(unquote(revision))
        files = json.loads(self._body())["files"]
        answer = []
        for item in files:
            existing = commit.files.get(item["path"]) if commit else None
            answer.append({"path": item["path"], "uploadMode": "lfs" if self.state._is_lfs(item["path"]) else "regular",
                           "shouldIgnore": False, "oid": existing.oid if existing else None})
        self._json(200, {"files": answer, "commitOid": commit.sha if commit else None})

    def _commit(self, repo_id: str, revision: str) -> None:
        repo = self._writable(repo_id)
        if repo is None:
            return
        branch = unquote(revision)
        if branch not in repo.branches:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {branch}")
        files = dict(repo.commits[repo.branches[branch]].files)
        message = ""
        for line in self._body().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value.get("summary", "")
            elif key == "file":
                files[value["path"]] = StoredFile(base64.b64decode(value["content"]), lfs=False)
            elif key == "lfsFile":
                data = self.state.lfs_store.get(value["oid"])
                if data is None:
                    return self._error(422, None, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                files[value["path"]] = StoredFile(data, lfs=True)
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: f for p, f in files.items() if not p.startswith(prefix)}
            else:
                return self._error(400, None, f"unknown commit operation {key!r}")
        commit = self.state.add_commit(repo, branch, files, message)
        self._json(200, {"commitUrl": f"{self._endpoint()}/{repo_id}/commit/{commit.sha}",
                         "commitOid": commit.sha, "pullRequestUrl": None})

    def _model_info(self, repo_id: str, revision: str) -> None:
        repo = self._readable(repo_id)
        if repo is None:
            return
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        self._json(200, {"id": repo_id, "modelId": repo_id, "sha": commit.sha, "private": repo.private,
                         "siblings": [{"rfilename": p} for p in sorted(commit.files)]})

    def _lfs_batch(self, repo_id: str) -> None:
        repo = self._writable(repo_id)
        if repo is None:
            return
        payload = json.loads(self._body())
        objects = []
        for obj in payload.get("objects", []):
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.state.lfs_store:
                entry["actions"] = {"upload": {"href": f"{self._endpoint()}/lfs-upload/{obj['oid']}"},
                                    "verify": {"href": f"{self._endpoint()}/lfs-verify/{obj['oid']}"}}
            objects.append(entry)
        self._json(200, {"transfer": "basic", "objects": objects})

    def _lfs_upload(self, oid: str) -> None:
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            return self._error(400, None, "uploaded bytes do not match their sha256")
        self.state.lfs_store[oid] = data
        self._send(200)

    def _lfs_verify(self, oid: str) -> None:
        self._body()
        if oid not in self.state.lfs_store:
            return self._error(404, None, f"LFS object {oid} not found")
        self._json(200, {"oid": oid})

    def _resolve(self, repo_id: str, revision: str, path: str, head: bool) -> None:
        repo = self._readable(repo_id, head)
        if repo is None:
            return
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
        stored = commit.files.get(path)
        if stored is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist on {revision}", head)
        data = stored.data
        if (repo_id, path) in self.state.corrupt and not head:
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{stored.oid}"', "Accept-Ranges": "bytes"}
        if stored.lfs:
            headers.update({"X-Linked-Etag": f'"{stored.oid}"', "X-Linked-Size": str(len(data))})
        self._send(200, data, headers, content_type="application/octet-stream", head=head)


class HubServer:
    """A :class:`HubState` served on 127.0.0.1 from a background thread (``with HubServer() as hub:``)."""

    def __init__(self, tokens: dict[str, str] | None = None, lfs_patterns: tuple[str, ...] = (),
                 port: int = 0) -> None:
        self.state = HubState(tokens, lfs_patterns)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> HubServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve an in-memory Hub on 127.0.0.1 (for trying push/pull).")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default="secret", help="The token that authenticates --user.")
    parser.add_argument("--user", default="me")
    args = parser.parse_args()
    server = HubServer({args.token: args.user}, port=args.port)
    print(f"Hub on {server.endpoint} (user {args.user!r}, token {args.token!r}); Ctrl-C stops it.", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.server.serve_forever()


if __name__ == "__main__":
    main()
