"""A small Hugging Face Hub on 127.0.0.1 for the download tests (the machine has no internet).

It serves repositories from memory in the Hub's layout, answering the calls the real
``huggingface_hub`` client makes for ``snapshot_download``/``hf_hub_download``/``model_info``:

* ``GET /api/models/{repo}[/revision/{rev}]`` -> ``{"id", "sha", "siblings"}``;
* ``GET /api/models/{repo}/tree/{rev}[/{path}]`` -> the file listing (git blob ids, LFS sha256 for weights);
* ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` -> the bytes, with ``X-Repo-Commit``, ``ETag`` (the LFS
  sha256 for weights, the git blob id otherwise) and ``Content-Length``;
* errors as the Hub sends them: 404 + ``X-Error-Code: RepoNotFound`` / ``RevisionNotFound`` /
  ``EntryNotFound``, and 401 + ``GatedRepo`` for a gated repository asked without its token.

Every request is logged (method, path, whether it carried a token), so tests can count downloads.
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit sha -> {path: bytes}
    refs: dict[str, str] = field(default_factory=dict)                  # branch or tag -> commit sha
    token: str | None = None                                            # gated: the token that opens it


class HubServer:
    """``with HubServer() as hub: hub.add_folder("acme/vae", path); hub.url`` (port chosen by the OS)."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, bool]] = []  # (method, path, had an Authorization header)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- content ---------------------------------------------------------------------------------
    def add_commit(self, repo_id: str, files: dict[str, bytes], ref: str = "main", tags: tuple[str, ...] = ()) -> str:
        """Add a commit holding exactly ``files`` and point ``ref`` (and ``tags``) at it; returns its sha."""
        repo = self.repos.setdefault(repo_id, Repo())
        h = hashlib.sha1(f"{repo_id}|{len(repo.commits)}".encode())
        for path in sorted(files):
            h.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
        sha = h.hexdigest()
        repo.commits[sha] = dict(files)
        for name in (ref, *tags):
            repo.refs[name] = sha
        return sha

    def add_folder(self, repo_id: str, folder: str | Path, ref: str = "main", tags: tuple[str, ...] = ()) -> str:
        """A commit with every file under ``folder`` (paths relative to it)."""
        folder = Path(folder)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return self.add_commit(repo_id, files, ref, tags)

    def gate(self, repo_id: str, token: str) -> None:
        """Serve ``repo_id`` only to requests that send ``Authorization: Bearer TOKEN``."""
        self.repos[repo_id].token = token

    def count(self, method: str, contains: str = "") -> int:
        with self._lock:
            return sum(1 for m, p, _ in self.requests if m == method and contains in p)

    # -- server ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> "HubServer":
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)  # type: ignore[union-attr]
            self._httpd = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- routing ---------------------------------------------------------------------------------
    def answer(self, method: str, raw_path: str, auth: str | None) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for one request. Path segments are percent-decoded one by one, since
        the client quotes a revision with ``safe=''`` (``refs%2Fpr%2F1``)."""
        with self._lock:
            self.requests.append((method, raw_path, auth is not None))
        parts = urlsplit(raw_path).path.strip("/").split("/")
        api = parts[:2] == ["api", "models"]
        if api:
            parts = parts[2:]
        if len(parts) < 2:
            return _error(404, "RepoNotFound", "Repository not found")
        repo_id, rest = "/".join(parts[:2]), parts[2:]
        repo = self.repos.get(repo_id)
        if repo is None:
            return _error(404, "RepoNotFound", "Repository not found")
        if repo.token is not None and auth != f"Bearer {repo.token}":
            return _error(401, "GatedRepo", "Access to this model is restricted: you must be authenticated")
        if api and not rest:
            rest = ["revision", "main"]
        if len(rest) < 2 or rest[0] not in (("revision", "tree") if api else ("resolve",)):
            return _error(404, "EntryNotFound" if not api else None, "Not found")
        rev = unquote(rest[1])
        sha = repo.refs.get(rev) or (rev if rev in repo.commits else None)
        if sha is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        files = repo.commits[sha]
        path = "/".join(unquote(p) for p in rest[2:])
        if api and rest[0] == "revision":
            return _json({"id": repo_id, "sha": sha, "private": False, "gated": "auto" if repo.token else False,
                          "siblings": [{"rfilename": p} for p in sorted(files)]})
        if api:  # tree
            return _json(_tree(files, path))
        if path not in files:
            status, headers, body = _error(404, "EntryNotFound", f"{path} does not exist at {sha}")
            headers["X-Repo-Commit"] = sha
            return status, headers, body
        data = files[path]
        etag = hashlib.sha256(data).hexdigest() if path.endswith(LFS_SUFFIXES) else git_blob_id(data)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "Content-Length": str(len(data)),
                   "Content-Type": "application/octet-stream"}
        return 200, headers, b"" if method == "HEAD" else data


def _tree(files: dict[str, bytes], folder: str) -> list[dict]:
    """The recursive listing under ``folder``, as ``GET /api/models/{repo}/tree/{rev}`` returns it."""
    prefix = f"{folder}/" if folder else ""
    out, dirs = [], set()
    for path in sorted(files):
        if not path.startswith(prefix):
            continue
        data = files[path]
        entry = {"type": "file", "path": path, "size": len(data), "oid": git_blob_id(data)}
        if path.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        out.append(entry)
        parents = path[len(prefix):].split("/")[:-1]
        dirs.update(prefix + "/".join(parents[:i]) for i in range(1, len(parents) + 1))
    return [{"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest()} for d in sorted(dirs)] + out


def _json(obj: object) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps(obj).encode()
    return 200, {"Content-Type": "application/json", "Content-Length": str(len(body))}, body


def _error(status: int, code: str | None, message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"error": message}).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), "X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return status, headers, body


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # a stuck client cannot hold a server thread forever

        def _reply(self) -> None:
            status, headers, body = hub.answer(self.command, self.path, self.headers.get("Authorization"))
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _reply

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

    return Handler
