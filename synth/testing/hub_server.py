"""A loopback Hugging Face Hub: the test double for ``synth push`` (the real hub is not reachable in tests).

Real HTTP on 127.0.0.1, so tests run the real ``huggingface_hub`` client (``HfApi.whoami``, ``create_repo``,
``create_branch``, ``repo_info``, ``list_repo_files``, ``create_commit``) against it. It implements the
endpoints that client calls in huggingface_hub 2.4, with the hub's request and response shapes:

- ``GET /api/whoami-v2``; ``POST /api/repos/create``; ``POST /api/validate-yaml`` (the card's front matter)
- ``GET /api/{type}s/{id}[/revision/{rev}]`` (repo info), ``GET .../tree/{rev}[/{path}]`` (file listing),
  ``POST .../branch/{name}``, ``POST .../preupload/{rev}``, ``POST .../commit/{rev}`` (NDJSON body)
- LFS (only for paths matching ``lfs_patterns``): ``POST /{type}s/{id}.git/info/lfs/objects/batch``
  (``basic`` transfer), then ``PUT`` of the content and a ``verify`` call.

Preupload answers ``regular`` by default, so file contents arrive base64-encoded inside the commit and no
Xet storage is needed (huggingface_hub uploads ``lfs`` files through Xet whenever ``hf_xet`` is installed,
and Xet's content-addressed storage protocol is out of scope here). With ``lfs_patterns`` set, clients
must disable Xet (``HF_HUB_DISABLE_XET=1``) to take the LFS batch path. Preupload also returns each
file's current ``oid``, which is how the client drops unchanged files and skips empty commits.

Repos, commits and files live in memory; tests read them (``server.files(repo_id)``,
``server.commits(repo_id)``, ``server.calls``). As a process (``python -m synth.testing.hub_server
--token hf_demo:alice``) it prints ``READY http://127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from synth.testing.hub_state import Commit, HubCall, HubError, HubState, Repo, StoredFile, validate_yaml

__all__ = ["HubCall", "HubError", "HubServer", "StoredFile", "main"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read calls instead
        pass

    def _handle(self) -> None:
        body = self._read_body()
        status, headers = 200, {"Content-Type": "application/json"}
        try:
            with self.server.hub.lock:
                answer: Any = self.server.route(self.command, self.path, self.headers, body)
        except HubError as exc:
            status, answer = exc.status, {"error": exc.message, **exc.extra}
            if exc.code:
                headers.update({"X-Error-Code": exc.code, "X-Error-Message": exc.message})
        payload = json.dumps(answer).encode()
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(payload))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], hub: HubState) -> None:
        super().__init__(address, _Handler)
        self.hub = hub

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def route(self, method: str, target: str, headers: Any, raw: bytes) -> dict[str, Any] | list[Any]:
        split = urlsplit(target)
        parts = [unquote(p) for p in split.path.strip("/").split("/")]
        ndjson = "ndjson" in headers.get("Content-Type", "")
        body: Any = _parse_body(raw, ndjson) if method == "POST" else None
        self.hub.calls.append(HubCall(method, unquote(split.path), body))
        hub, base = self.hub, self.base_url
        if parts[0] == "_lfs":
            return hub.lfs_put(parts[1], raw) if method == "PUT" else hub.lfs_verify(parts[1], body)
        if parts[-4:] == ["info", "lfs", "objects", "batch"]:
            hub.user(headers.get("Authorization", ""))
            return hub.lfs_batch(body, base)
        if parts[:2] == ["api", "validate-yaml"]:
            return validate_yaml(body)
        user = hub.user(headers.get("Authorization", ""))
        if parts[:2] == ["api", "whoami-v2"]:
            return {
                "type": "user",
                "name": user,
                "fullname": user,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
            }
        if parts[:3] == ["api", "repos", "create"]:
            return hub.create_repo(user, body, base)
        if len(parts) < 4 or parts[0] != "api":
            raise HubError(404, f"no such endpoint: {method} {split.path}")
        repo = hub.repo(parts[1].removesuffix("s"), f"{parts[2]}/{parts[3]}")
        action, rest = (parts[4], parts[5:]) if len(parts) > 4 else ("", [])
        revision = rest[0] if rest else "main"
        if method == "GET" and action in ("", "revision"):
            return hub.info(repo, revision)
        if method == "GET" and action == "tree":
            return hub.tree(repo, revision, "/".join(rest[1:]))
        if method == "POST" and action == "branch":
            return hub.create_branch(repo, revision, body or {})
        if method == "POST" and action == "preupload":
            return hub.preupload(repo, revision, body)
        if method == "POST" and action == "commit":
            if parse_qs(split.query).get("create_pr"):
                raise HubError(400, "pull requests are not supported by the loopback hub")
            return hub.commit(repo, revision, body, base)
        raise HubError(404, f"no such endpoint: {method} {split.path}")


def _parse_body(raw: bytes, ndjson: bool) -> Any:
    if ndjson:
        return [json.loads(line) for line in raw.splitlines() if line.strip()]
    return json.loads(raw) if raw else {}


class HubServer:
    """The loopback hub in a daemon thread; a context manager. See the module docs.

    ``tokens`` maps each accepted token to its user name; ``lfs_patterns`` (fnmatch, e.g. ``*.parquet``)
    selects the files that preupload sends the LFS way.
    """

    def __init__(
        self,
        tokens: dict[str, str] | None = None,
        *,
        lfs_patterns: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.hub = HubState(tokens or {"hf_test_token": "alice"}, lfs_patterns)
        self._address = (host, port)
        self._http: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """What ``HfApi(endpoint=...)`` and ``synth push --endpoint`` take."""
        if self._http is None:
            raise RuntimeError("the hub server is not started")
        return self._http.base_url

    @property
    def calls(self) -> list[HubCall]:
        return self.hub.calls

    def commits(self, repo_id: str, repo_type: str = "dataset", branch: str = "main") -> list[Commit]:
        """The branch's history, oldest first (the repo's initial commit included)."""
        with self.hub.lock:
            repo = self.hub.repo(repo_type, repo_id)
            history, oid = [], repo.branches.get(branch)
            while oid is not None:
                history.append(repo.commits[oid])
                oid = repo.commits[oid].parent
            return history[::-1]

    def files(self, repo_id: str, repo_type: str = "dataset", branch: str = "main") -> dict[str, StoredFile]:
        with self.hub.lock:
            return dict(self.hub.repo(repo_type, repo_id).head(branch).files)

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.hub.repo(repo_type, repo_id)

    def start(self) -> HubServer:
        self._http = _HttpServer(self._address, self.hub)
        self._thread = threading.Thread(target=self._http.serve_forever, name="hub-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._thread is not None:
            self._thread.join(10)
        self._http = self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _token_pair(text: str) -> tuple[str, str]:
    token, sep, user = text.partition(":")
    if not sep or not token or not user:
        raise argparse.ArgumentTypeError(f"--token must look like TOKEN:USER, got {text!r}")
    return token, user


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m synth.testing.hub_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on the READY line)")
    parser.add_argument(
        "--token", type=_token_pair, action="append", default=[], help="TOKEN:USER, repeatable"
    )
    parser.add_argument("--lfs", action="append", default=[], help="fnmatch pattern of LFS files, repeatable")
    args = parser.parse_args(argv)
    server = HubServer(
        dict(args.token) or None, lfs_patterns=args.lfs, host=args.host, port=args.port
    ).start()
    print(f"READY {server.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    server.stop()


if __name__ == "__main__":
    main()
