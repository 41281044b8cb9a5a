"""Publishing a ``synth export`` folder to the Hugging Face Hub as a dataset repo (``synth push``).

A push mirrors one export: its dataset card (``README.md``) and the data files the card names. It is one
commit made with ``huggingface_hub``'s ``create_commit``, which asks the hub for each file's current oid
first and leaves unchanged files out, so pushing an unchanged folder again makes **no new commit** (the
hub keeps its history clean; the result says "unchanged"). Data files under ``data/`` on the hub that the
card no longer names (an earlier export's) are deleted in the same commit, so the repo never holds two
exports' rows. Other files on the hub (a LICENSE added by hand) are left alone.

The token comes from ``HF_TOKEN`` or the ``hf auth login`` cache, never from the command line, and is never
printed. Before anything is sent, every file is scanned for the values of secret-looking environment
variables (the HF token, ``*_API_KEY``, ...) and for credentials embedded in URLs (``user:PASSWORD@host``,
``?api_key=``): a match refuses the push, naming the variable or the kind, never the value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from synth.errors import SynthError

if TYPE_CHECKING:
    from huggingface_hub import HfApi

CARD = "README.md"
DATA_DIR = "data/"
LOAD_PLACEHOLDER = "PATH_OR_REPO"  # synth.dataset.card writes it in the card's load_dataset example
SECRET_NAME = re.compile(r"TOKEN|API_KEY|SECRET|PASSWORD|_KEY$", re.IGNORECASE)
MIN_SECRET_LENGTH = 12


class PushError(SynthError):
    """A push was refused: not an export folder, no token, a secret in the files, or the hub said no."""


@dataclass(frozen=True)
class PushFile:
    """One file of the push: where it goes in the repo, where it comes from, its size (and rows)."""

    path_in_repo: str
    source: Path
    size: int
    rows: int | None = None


@dataclass(frozen=True)
class PushPlan:
    """Everything a push will send, computed from the folder alone (``--dry-run`` prints it)."""

    folder: Path
    repo_id: str
    revision: str
    private: bool
    commit_message: str
    card: str
    files: tuple[PushFile, ...]
    skipped: tuple[str, ...] = ()

    def describe(self) -> str:
        """The exact files (repo path, bytes, rows) and the card as it will be pushed."""
        rows = [f"dry run: would push {len(self.files)} files to dataset {self.repo_id}@{self.revision}"]
        rows.append(f"  visibility: {'private' if self.private else 'public (or the existing setting)'}")
        rows.append(f"  commit message: {self.commit_message}")
        for item in self.files:
            extra = f", {item.rows} rows" if item.rows is not None else ""
            rows.append(f"  {item.path_in_repo}  {item.size} bytes{extra}")
        rows += [f"  (not pushed: {name})" for name in self.skipped]
        return "\n".join([*rows, "", f"--- {CARD} ---", self.card])


@dataclass(frozen=True)
class PushResult:
    repo_url: str
    commit_url: str
    commit_oid: str
    changed: bool
    deleted: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        if not self.changed:
            return (
                f"unchanged: {self.repo_url} already has these files (commit {self.commit_oid[:12]}); "
                "no new commit"
            )
        gone = f", deleted stale {', '.join(self.deleted)}" if self.deleted else ""
        return f"pushed to {self.repo_url}: {self.commit_url}{gone}"


# -- planning (local only) --------------------------------------------------------------------------------
def plan_push(
    folder: Path | str,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
) -> PushPlan:
    """Check that ``folder`` is an export (a card naming data files that exist) and list what to send."""
    folder = Path(folder)
    _check_repo_id(repo_id)
    card_text, front = read_card(folder)
    data = [_data_file(folder, path) for path in _card_data_paths(folder, front)]
    card = card_text.replace(LOAD_PLACEHOLDER, repo_id)
    files = (PushFile(CARD, folder / CARD, len(card.encode())), *data)
    pushed = {f.path_in_repo for f in files}
    skipped = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).as_posix() not in pushed
    )
    rows = sum(f.rows or 0 for f in data)
    message = commit_message or f"synth push: {_title(card_text) or folder.name}, {rows} rows"
    return PushPlan(folder, repo_id, revision or "main", private, message, card, files, tuple(skipped))


def read_card(folder: Path) -> tuple[str, dict[str, Any]]:
    """The card text and its YAML front matter; a folder without one is not an export."""
    how = f"Make one with `synth export RUN --format FORMAT --out {folder}`."
    if not folder.is_dir():
        raise PushError(f"{folder} is not a folder. {how}")
    card_path = folder / CARD
    if not card_path.is_file():
        raise PushError(f"{folder} is not a `synth export` folder: it has no {CARD} dataset card. {how}")
    text = card_path.read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    try:
        front = yaml.safe_load(match.group(1)) if match else None
    except yaml.YAMLError as exc:
        raise PushError(f"{card_path}: the card's YAML front matter does not parse: {exc}") from exc
    if not isinstance(front, dict):
        raise PushError(f"{card_path} has no YAML front matter (a `---` block at the top). {how}")
    return text, front


def _card_data_paths(folder: Path, front: Mapping[str, Any]) -> list[str]:
    """The data files named by the card's ``configs[].data_files[].path`` (patterns allowed)."""
    paths: list[str] = []
    for config in front.get("configs") or []:
        for item in config.get("data_files") or []:
            pattern = item.get("path") if isinstance(item, dict) else item
            patterns = pattern if isinstance(pattern, list) else [pattern]
            for entry in patterns:
                matches = sorted(p.relative_to(folder).as_posix() for p in folder.glob(str(entry)))
                if not matches:
                    raise PushError(
                        f"{folder / CARD} names data file {entry!r}, which is not in {folder}: "
                        "re-run `synth export` into this folder."
                    )
                paths += [m for m in matches if m not in paths]
    if not paths:
        raise PushError(
            f"{folder} is not a `synth export` folder: its {CARD} names no data files "
            "(front matter `configs: [{data_files: ...}]`)."
        )
    return paths


def _data_file(folder: Path, path: str) -> PushFile:
    source = folder / path
    rows = None
    if source.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(source).metadata.num_rows
    return PushFile(path, source, source.stat().st_size, rows)


def _title(card: str) -> str:
    heading = re.search(r"^# (.+)$", card, re.M)
    return heading.group(1).strip() if heading else ""


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if repo_id.count("/") != 1:
        raise PushError(f"--repo {repo_id!r} must be USER/NAME (or ORG/NAME), e.g. alice/coevol-sft")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise PushError(f"--repo {repo_id!r} is not a valid repo id: {exc}") from exc


# -- secrets ----------------------------------------------------------------------------------------------
def secret_values(env: Mapping[str, str], token: str | None = None) -> dict[str, str]:
    """Name -> value of every secret-looking environment variable (and the token in use)."""
    found = {
        name: value
        for name, value in env.items()
        if SECRET_NAME.search(name) and len(value.strip()) >= MIN_SECRET_LENGTH
    }
    if token:
        found.setdefault("the Hugging Face token", token)
    return found


def check_no_secrets(plan: PushPlan, secrets: Mapping[str, str]) -> None:
    """Refuse the push when a secret's value, or a credential embedded in a URL (``user:PASSWORD@``,
    ``?api_key=``), is in the card or any data cell (decoded, not raw bytes)."""
    from synth.engine.logs import url_secrets

    for path, text in _texts(plan):
        if url_secrets(text):
            raise PushError(
                f"refusing to push: {path} (from {plan.folder}) holds a URL with embedded credentials "
                "(user:password@host or a secret query value such as ?api_key=). Remove it from the run "
                "(or re-export without it) before publishing."
            )
        for name, value in secrets.items():
            if value in text:
                raise PushError(
                    f"refusing to push: the value of {name} appears in {path} (from {plan.folder}). "
                    "Remove it from the run (or re-export without it) before publishing."
                )


def _texts(plan: PushPlan) -> Iterator[tuple[str, str]]:
    yield CARD, plan.card
    for item in plan.files:
        if item.path_in_repo == CARD:
            continue
        if item.source.suffix != ".parquet":
            yield item.path_in_repo, item.source.read_bytes().decode("utf-8", "replace")
            continue
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(item.source).iter_batches(batch_size=5000):
            yield item.path_in_repo, json.dumps(batch.to_pylist(), ensure_ascii=False, default=str)


# -- pushing ------------------------------------------------------------------------------------------------
def resolve_token() -> str:
    """``HF_TOKEN``, else the ``hf auth login`` cache; a clear error when neither is there."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise PushError(
            "no Hugging Face token: set HF_TOKEN (a write token from https://huggingface.co/settings/tokens) "
            "or run `hf auth login` once. synth push takes no token on the command line."
        )
    return token


def push(plan: PushPlan, token: str, *, endpoint: str | None = None) -> PushResult:
    """Create the dataset repo (and branch) if needed and commit the plan's files in one commit."""
    import httpx2
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    where = api.endpoint
    try:
        return _push(api, plan)
    except httpx2.TransportError as exc:
        raise PushError(
            f"could not reach the hub at {where}: {exc} (check --endpoint / HF_ENDPOINT)"
        ) from exc
    except httpx2.HTTPError as exc:
        raise PushError(
            f"the hub at {where} refused the push of {plan.repo_id}: {_first_lines(exc)}"
        ) from exc
    except ValueError as exc:  # huggingface_hub's client-side checks (e.g. invalid card metadata)
        raise PushError(f"pushing {plan.folder} to {plan.repo_id} failed: {exc}") from exc


def _push(api: HfApi, plan: PushPlan) -> PushResult:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    _whoami(api)
    # private=None (not False) when not asked: a new repo then follows the namespace's default visibility
    repo_url = api.create_repo(plan.repo_id, repo_type="dataset", private=plan.private or None, exist_ok=True)
    if plan.revision != "main":
        api.create_branch(plan.repo_id, branch=plan.revision, repo_type="dataset", exist_ok=True)
    before = api.repo_info(plan.repo_id, repo_type="dataset", revision=plan.revision)
    warnings = []
    if plan.private and not before.private:
        warnings.append(
            f"{plan.repo_id} already exists and is public: --private does not change an existing repo "
            "(change its visibility in the repo settings on the hub)."
        )
    remote = api.list_repo_files(plan.repo_id, repo_type="dataset", revision=plan.revision)
    pushed = {f.path_in_repo for f in plan.files}
    stale = tuple(p for p in remote if p.startswith(DATA_DIR) and p not in pushed)
    operations: list[Any] = [CommitOperationAdd(CARD, plan.card.encode())]
    operations += [CommitOperationAdd(f.path_in_repo, f.source) for f in plan.files if f.path_in_repo != CARD]
    operations += [CommitOperationDelete(path) for path in stale]
    info = api.create_commit(
        plan.repo_id,
        operations,
        commit_message=plan.commit_message,
        repo_type="dataset",
        revision=plan.revision,
    )
    changed = info.oid != before.sha
    return PushResult(
        str(repo_url), info.commit_url, info.oid, changed, stale if changed else (), tuple(warnings)
    )


def _whoami(api: HfApi) -> str:
    """Check the token first, so a bad one fails before anything is created, with a fix in the message."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return str(api.whoami()["name"])
    except HfHubHTTPError as exc:
        if exc.response is not None and exc.response.status_code == 401:
            raise PushError(
                f"the hub at {api.endpoint} rejected the token (from HF_TOKEN or the `hf auth login` "
                "cache): check it at https://huggingface.co/settings/tokens, then set HF_TOKEN or run "
                "`hf auth login`."
            ) from exc
        raise


def _first_lines(exc: Exception) -> str:
    return " ".join(str(exc).split("\n")[:3]).strip()
