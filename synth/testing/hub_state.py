"""The loopback hub's data and endpoint logic, free of HTTP (see :mod:`synth.testing.hub_server`).

Repos hold commits (a full file map each) and branches; LFS contents live in one content-addressed store.
Each method answers one hub endpoint with the JSON that huggingface_hub 2.4 expects, or raises
:class:`HubError` with the status and ``X-Error-Code`` the real hub uses (the client maps those codes to
``RepositoryNotFoundError``, ``RevisionNotFoundError``, ...).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"


class HubError(Exception):
    """An HTTP error answer: status, message and the hub's ``X-Error-Code`` (huggingface_hub maps it)."""

    def __init__(self, status: int, message: str, code: str = "", **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


@dataclass(frozen=True)
class StoredFile:
    content: bytes
    lfs: bool

    @property
    def oid(self) -> str:
        """What preupload reports: sha256 for LFS files, the git blob sha1 for regular ones."""
        if self.lfs:
            return hashlib.sha256(self.content).hexdigest()
        return hashlib.sha1(b"blob %d\0" % len(self.content) + self.content).hexdigest()


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    message: str
    description: str
    files: dict[str, StoredFile]


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def head(self, revision: str) -> Commit:
        oid = self.branches.get(revision, revision if revision in self.commits else None)
        if oid is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[oid]


@dataclass(frozen=True)
class HubCall:
    """One request as the server saw it (never its headers: they carry the token)."""

    method: str
    path: str
    body: Any


class HubState:
    """The hub's data and the logic of each endpoint, free of HTTP (one lock: handlers run in threads)."""

    def __init__(self, tokens: dict[str, str], lfs_patterns: Iterable[str]) -> None:
        self.tokens = dict(tokens)
        self.lfs_patterns = tuple(lfs_patterns)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_store: dict[str, bytes] = {}
        self.calls: list[HubCall] = []
        self.lock = threading.RLock()

    def user(self, authorization: str) -> str:
        token = authorization.removeprefix("Bearer ").strip()
        if token not in self.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.tokens[token]

    def repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def create_repo(self, user: str, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        namespace, repo_type = body.get("organization") or user, body.get("type") or "model"
        if namespace != user:
            raise HubError(403, f"You don't have the rights to create a repo under the namespace {namespace}")
        repo_id = f"{namespace}/{body['name']}"
        url = f"{base_url}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
        if (repo_type, repo_id) in self.repos:
            raise HubError(409, f"You already created this {repo_type} repo", url=url)
        repo = Repo(repo_id, repo_type, private=body.get("visibility") == "private")
        first = Commit(_oid("initial", repo_id), None, "initial commit", "", {})
        first.files[".gitattributes"] = StoredFile(GITATTRIBUTES, lfs=False)
        repo.commits[first.oid], repo.branches["main"] = first, first.oid
        self.repos[(repo_type, repo_id)] = repo
        return {"url": url, "name": repo_id, "id": repo_id}

    def info(self, repo: Repo, revision: str) -> dict[str, Any]:
        head = repo.head(revision)
        return {
            "id": repo.repo_id,
            "sha": head.oid,
            "private": repo.private,
            "siblings": [{"rfilename": path} for path in sorted(head.files)],
        }

    def tree(self, repo: Repo, revision: str, prefix: str) -> list[dict[str, Any]]:
        files = repo.head(revision).files
        entries = []
        for path in sorted(files):
            if prefix and not path.startswith(prefix.rstrip("/") + "/"):
                continue
            stored = files[path]
            entry: dict[str, Any] = {"type": "file", "path": path, "size": len(stored.content)}
            entry["oid"] = StoredFile(stored.content, lfs=False).oid
            if stored.lfs:
                entry["lfs"] = {"oid": stored.oid, "size": len(stored.content), "pointerSize": 134}
            entries.append(entry)
        return entries

    def create_branch(self, repo: Repo, branch: str, body: dict[str, Any]) -> dict[str, Any]:
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        repo.branches[branch] = repo.head(body.get("startingPoint") or "main").oid
        return {}

    def preupload(self, repo: Repo, revision: str, body: dict[str, Any]) -> dict[str, Any]:
        files = repo.head(revision).files
        answers = []
        for item in body["files"]:
            lfs = item["size"] > 0 and self.is_lfs(item["path"])
            current = files.get(item["path"])
            oid = current.oid if current is not None and current.lfs == lfs else None
            answers.append(
                {
                    "path": item["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        return {"files": answers, "commitOid": repo.head(revision).oid}

    def is_lfs(self, path: str) -> bool:
        return any(fnmatch.fnmatch(path, pattern) for pattern in self.lfs_patterns)

    def lfs_batch(self, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        objects = []
        for obj in body["objects"]:
            answer: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.lfs_store:
                href = f"{base_url}/_lfs/{obj['oid']}"
                answer["actions"] = {"upload": {"href": href}, "verify": {"href": f"{href}/verify"}}
            objects.append(answer)
        return {"transfer": "basic", "objects": objects}

    def lfs_put(self, oid: str, content: bytes) -> dict[str, Any]:
        if hashlib.sha256(content).hexdigest() != oid:
            raise HubError(400, f"LFS content does not match its sha256 {oid}")
        self.lfs_store[oid] = content
        return {}

    def lfs_verify(self, oid: str, body: dict[str, Any]) -> dict[str, Any]:
        if len(self.lfs_store.get(oid, b"")) != body.get("size") or oid not in self.lfs_store:
            raise HubError(404, f"LFS object {oid} was not uploaded")
        return {}

    def commit(self, repo: Repo, revision: str, lines: list[dict[str, Any]], base_url: str) -> dict[str, Any]:
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The commit payload must start with a header line")
        if revision not in repo.branches:
            raise HubError(400, f"Commits go to a branch; {revision!r} is not one", "RevisionNotFound")
        head, header = repo.head(revision), lines[0]["value"]
        if header.get("parentCommit") and header["parentCommit"] != head.oid:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(head.files)
        for line in lines[1:]:
            self._apply(files, line["key"], line["value"])
        oid = _oid(head.oid, header["summary"], *(f"{p}:{f.oid}" for p, f in sorted(files.items())))
        repo.commits[oid] = Commit(oid, head.oid, header["summary"], header.get("description", ""), files)
        repo.branches[revision] = oid
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return {
            "commitUrl": f"{base_url}/{prefix}{repo.repo_id}/commit/{oid}",
            "commitOid": oid,
            "pullRequestUrl": None,
        }

    def _apply(self, files: dict[str, StoredFile], key: str, value: dict[str, Any]) -> None:
        path = value["path"]
        if key == "file":
            files[path] = StoredFile(base64.b64decode(value["content"]), lfs=False)
        elif key == "lfsFile":
            if value["oid"] not in self.lfs_store:
                raise HubError(422, f"LFS file {path} ({value['oid']}) was never uploaded")
            files[path] = StoredFile(self.lfs_store[value["oid"]], lfs=True)
        elif key == "deletedFile":
            if files.pop(path, None) is None:
                raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
        elif key == "deletedFolder":
            for name in [n for n in files if n.startswith(path.rstrip("/") + "/")]:
                del files[name]
        else:
            raise HubError(400, f"Unknown commit operation {key!r}")


def validate_yaml(body: dict[str, Any]) -> dict[str, Any]:
    """The front matter must parse as a YAML mapping (the hub checks much more; this is the shape)."""
    content: str = body.get("content", "")
    if not content.startswith("---\n"):
        return {"errors": [], "warnings": [{"message": "empty or missing yaml metadata in repo card"}]}
    front = content[4:].split("\n---", 1)[0]
    try:
        data = yaml.safe_load(front)
    except yaml.YAMLError as exc:
        raise HubError(400, f"Invalid YAML in README.md: {exc}") from exc
    if not isinstance(data, dict):
        raise HubError(400, "README.md metadata must be a YAML mapping")
    return {"errors": [], "warnings": []}


def _oid(*parts: str) -> str:
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()
