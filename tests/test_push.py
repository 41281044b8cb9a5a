"""``synth push`` against the loopback hub (real HTTP, the real huggingface_hub client): what arrives, in
which commit, idempotent re-push, --private / --revision / --dry-run, token handling and secret hygiene."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from huggingface_hub import constants

from graphs.coevol import GRAPH
from synth.dataset.export import ExportOptions, export_run
from synth.dataset.hub import PushError, check_no_secrets, plan_push, push, resolve_token, secret_values
from synth.engine.store import RunStore
from synth.testing.hub_server import HubServer
from tests.coevol_script import coevol_responder
from tests.test_export import CONFIG, coevol_record

TOKEN = "hf_loopbackTOKEN0123456789abcdef"
REPO = "alice/coevol-sft"


@pytest.fixture(autouse=True)
def no_login_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the machine's own `hf auth login` cache or HF_TOKEN."""
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer({TOKEN: "alice"}) as server:
        yield server


def make_export(tmp_path: Path, accepted: int = 1, name: str = "sft") -> Path:
    folder = tmp_path / f"run-{accepted}"
    if not folder.exists():
        store = RunStore(folder)
        store.write([coevol_record(i, accepted=accepted) for i in range(4)])
        store.write_config(CONFIG, "abc")
        store.close()
    export_run(folder, GRAPH, "sft", tmp_path / name, ExportOptions(overwrite=True))  # re-exports replace
    return tmp_path / name


def parquet_rows(content: bytes) -> list[dict[str, Any]]:
    return pq.read_table(io.BytesIO(content)).to_pylist()  # type: ignore[no-any-return]


def test_push_sends_the_card_and_data_in_one_commit(tmp_path: Path, hub: HubServer) -> None:
    export = make_export(tmp_path)
    plan = plan_push(export, REPO, commit_message="First upload")
    result = push(plan, TOKEN, endpoint=hub.url)

    assert result.changed and result.repo_url == f"{hub.url}/datasets/{REPO}"
    (data,) = (export / "data").glob("*.parquet")
    files = hub.files(REPO)
    assert sorted(files) == [".gitattributes", "README.md", f"data/{data.name}"]
    assert files[f"data/{data.name}"].content == data.read_bytes()
    assert parquet_rows(files[f"data/{data.name}"].content) == pq.read_table(data).to_pylist()
    card = files["README.md"].content.decode()
    assert card == (export / "README.md").read_text().replace("PATH_OR_REPO", REPO)
    assert f'load_dataset("{REPO}", split="train")' in card
    assert [c.message for c in hub.commits(REPO)] == ["initial commit", "First upload"]
    assert result.commit_oid == hub.commits(REPO)[-1].oid
    create = next(c for c in hub.calls if c.path == "/api/repos/create")
    assert create.body == {"name": "coevol-sft", "organization": "alice", "type": "dataset"}


def test_every_split_the_card_names_is_pushed(tmp_path: Path, hub: HubServer) -> None:
    from synth.dataset.export import ExportOptions

    make_export(tmp_path)
    options = ExportOptions(splits={"test": 0.5}, seed=1)
    export_run(tmp_path / "run-1", GRAPH, "sft", tmp_path / "split", options)
    plan = plan_push(tmp_path / "split", REPO)
    assert sorted(f.path_in_repo.split("-")[0] for f in plan.files[1:]) == ["data/test", "data/train"]
    push(plan, TOKEN, endpoint=hub.url)
    pushed = {p: f for p, f in hub.files(REPO).items() if p.startswith("data/")}
    assert sorted(pushed) == _data(tmp_path / "split")
    assert sum(len(parquet_rows(f.content)) for f in pushed.values()) == 4


def test_default_commit_message_names_the_export(tmp_path: Path) -> None:
    plan = plan_push(make_export(tmp_path), REPO)
    assert plan.commit_message == "synth push: coevol · sft, 4 rows"
    assert [(f.path_in_repo, f.rows) for f in plan.files][1][1] == 4


def test_repush_unchanged_makes_no_commit_and_a_new_export_replaces_the_old_data(
    tmp_path: Path, hub: HubServer
) -> None:
    export = make_export(tmp_path)
    first = push(plan_push(export, REPO), TOKEN, endpoint=hub.url)
    again = push(plan_push(export, REPO), TOKEN, endpoint=hub.url)
    assert (again.changed, again.commit_oid) == (False, first.commit_oid)
    assert "no new commit" in again.describe()
    assert len(hub.commits(REPO)) == 2
    assert [c.path for c in hub.calls if c.path.endswith("/commit/main")] == [
        f"/api/datasets/{REPO}/commit/main"
    ]

    old = {p for p in hub.files(REPO) if p.startswith("data/")}
    make_export(tmp_path, accepted=0)  # re-export into the same folder: new rows, new data file name
    third = push(plan_push(export, REPO, commit_message="Re-export"), TOKEN, endpoint=hub.url)
    new = {p for p in hub.files(REPO) if p.startswith("data/")}
    assert third.changed and third.deleted == tuple(old) and len(new) == 1 and new != old
    assert hub.commits(REPO)[-1].message == "Re-export"
    rows = parquet_rows(hub.files(REPO)[new.pop()].content)
    assert rows[0]["messages"][1]["content"] == "Original answer 0."


def test_private_reaches_the_create_call_and_an_existing_public_repo_warns(
    tmp_path: Path, hub: HubServer
) -> None:
    export = make_export(tmp_path)
    push(plan_push(export, "alice/secret-data", private=True), TOKEN, endpoint=hub.url)
    create = next(c for c in hub.calls if c.path == "/api/repos/create")
    assert create.body["visibility"] == "private" and hub.repo("alice/secret-data").private

    push(plan_push(export, REPO), TOKEN, endpoint=hub.url)
    assert not hub.repo(REPO).private
    result = push(plan_push(export, REPO, private=True), TOKEN, endpoint=hub.url)
    assert not hub.repo(REPO).private
    assert result.warnings and "already exists and is public" in result.warnings[0]


def test_revision_creates_the_branch_and_leaves_main_alone(tmp_path: Path, hub: HubServer) -> None:
    export = make_export(tmp_path)
    push(plan_push(export, REPO, revision="v2"), TOKEN, endpoint=hub.url)
    assert sorted(hub.files(REPO, branch="v2")) == sorted(["README.md", ".gitattributes", *_data(export)])
    assert list(hub.files(REPO)) == [".gitattributes"]
    again = push(plan_push(export, REPO, revision="v2"), TOKEN, endpoint=hub.url)
    assert not again.changed
    assert any(c.path == f"/api/datasets/{REPO}/branch/v2" for c in hub.calls)


def test_lfs_upload_path_when_xet_is_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub that wants parquet as LFS: the client (Xet off) uses the LFS batch API, then commits pointers."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    export = make_export(tmp_path)
    with HubServer({TOKEN: "alice"}, lfs_patterns=["*.parquet"]) as server:
        push(plan_push(export, REPO), TOKEN, endpoint=server.url)
        again = push(plan_push(export, REPO), TOKEN, endpoint=server.url)
        (name,) = _data(export)
        stored = server.files(REPO)[name]
        assert stored.lfs and stored.content == (export / name).read_bytes()
        assert not server.files(REPO)["README.md"].lfs
        methods = [(c.method, c.path.split("/")[-1]) for c in server.calls]
        assert ("POST", "batch") in methods and ("PUT", stored.oid) in methods
        assert not again.changed and len(server.commits(REPO)) == 2


def test_dry_run_prints_files_and_card_and_sends_nothing(tmp_path: Path, hub: HubServer) -> None:
    export = make_export(tmp_path)
    (export / "notes.txt").write_text("scratch")
    out = run_cli(["push", str(export), "--repo", REPO, "--dry-run", "--endpoint", hub.url], env={})
    assert out.returncode == 0, out.stderr
    (name,) = _data(export)
    size = (export / name).stat().st_size
    assert f"  {name}  {size} bytes, 4 rows" in out.stdout
    assert "(not pushed: notes.txt)" in out.stdout
    card = (export / "README.md").read_text().replace("PATH_OR_REPO", REPO)
    assert out.stdout.endswith(card + "\n") and f"  README.md  {len(card.encode())} bytes" in out.stdout
    assert hub.calls == []


def test_missing_token_is_a_clear_error_before_any_request(tmp_path: Path, hub: HubServer) -> None:
    export = make_export(tmp_path)
    out = run_cli(["push", str(export), "--repo", REPO, "--endpoint", hub.url], env={})
    assert out.returncode == 2
    assert "no Hugging Face token: set HF_TOKEN" in out.stderr and "hf auth login" in out.stderr
    assert hub.calls == []
    with pytest.raises(PushError, match="no Hugging Face token"):
        resolve_token()


def test_token_from_the_login_cache(tmp_path: Path, hub: HubServer) -> None:
    Path(constants.HF_TOKEN_PATH).parent.mkdir(parents=True)
    Path(constants.HF_TOKEN_PATH).write_text(TOKEN)
    assert resolve_token() == TOKEN
    assert push(plan_push(make_export(tmp_path), REPO), resolve_token(), endpoint=hub.url).changed


def test_a_rejected_token_fails_before_anything_is_created(tmp_path: Path, hub: HubServer) -> None:
    with pytest.raises(PushError, match="rejected the token") as info:
        push(plan_push(make_export(tmp_path), REPO), "hf_wrongWRONGwrong", endpoint=hub.url)
    assert "hf_wrong" not in str(info.value)
    assert [c.path for c in hub.calls] == ["/api/whoami-v2"]


def test_an_unreachable_hub_is_named(tmp_path: Path) -> None:
    with pytest.raises(PushError, match=r"could not reach the hub at http://127.0.0.1:9\b"):
        push(plan_push(make_export(tmp_path), REPO), TOKEN, endpoint="http://127.0.0.1:9")


def test_a_foreign_namespace_is_refused_with_the_hub_message(tmp_path: Path, hub: HubServer) -> None:
    with pytest.raises(PushError, match=r"refused the push of bob/data: .*403"):
        push(plan_push(make_export(tmp_path), "bob/data"), TOKEN, endpoint=hub.url)


def test_folders_that_are_not_exports_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PushError, match="is not a folder"):
        plan_push(tmp_path / "missing", REPO)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PushError, match=r"not a `synth export` folder: it has no README\.md"):
        plan_push(tmp_path / "empty", REPO)
    (tmp_path / "empty" / "README.md").write_text("# just a readme\n")
    with pytest.raises(PushError, match="has no YAML front matter"):
        plan_push(tmp_path / "empty", REPO)
    export = make_export(tmp_path)
    for name in _data(export):
        (export / name).unlink()
    with pytest.raises(PushError, match=r"names data file 'data/train-.*parquet', which is not in"):
        plan_push(export, REPO)
    (export / "README.md").write_text("---\nlicense: other\n---\n# x\n")
    with pytest.raises(PushError, match="names no data files"):
        plan_push(export, REPO)
    with pytest.raises(PushError, match="must be USER/NAME"):
        plan_push(make_export(tmp_path, name="other"), "coevol-sft")


def test_a_secret_in_the_data_refuses_the_push(tmp_path: Path) -> None:
    plan = plan_push(make_export(tmp_path), REPO)
    row_text = "An evolved answer number 1."
    env = {"MY_API_KEY": row_text, "PATH": row_text, "SHORT_TOKEN": "Question"}
    assert set(secret_values(env)) == {"MY_API_KEY"}
    with pytest.raises(PushError, match=r"value of MY_API_KEY appears in data/train-.*\.parquet") as info:
        check_no_secrets(plan, secret_values(env))
    assert row_text not in str(info.value)
    check_no_secrets(plan, secret_values({"OPENAI_API_KEY": "sk-not-in-this-export-123"}, TOKEN))


def test_tokens_in_the_environment_reach_no_file_and_no_output(
    tmp_path: Path, hub: HubServer, openai_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run (loopback OpenAI, key set) -> export -> push (HF_TOKEN, debug logging): grep every byte."""
    from rich.console import Console

    from synth.engine.session import RunRequest, run_session

    openai_key = "sk-loopbackSECRET0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", openai_key)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        "".join(json.dumps({"instruction": f"ACCEPT {i}", "output": "v0"}) + "\n" for i in range(3))
    )
    openai_server.script(coevol_responder)
    log = io.StringIO()
    request = RunRequest(
        graph="coevol",
        input=seeds,
        out=tmp_path / "run",
        options={"max_rounds": 1},
        models={"default": f"openai:scripted@{openai_server.base_url}"},
        concurrency=2,
    )
    asyncio.run(run_session(request, Console(file=log, width=200)))
    export_run(tmp_path / "run", GRAPH, "dpo", tmp_path / "dpo")
    env = {"HF_TOKEN": TOKEN, "OPENAI_API_KEY": openai_key, "HF_HUB_VERBOSITY": "debug"}
    out = run_cli(["push", str(tmp_path / "dpo"), "--repo", REPO, "--endpoint", hub.url], env=env)
    assert out.returncode == 0, out.stderr
    assert "pushed to" in out.stderr and len(hub.commits(REPO)) == 2

    texts = {"run output": log.getvalue(), "push stdout": out.stdout, "push stderr": out.stderr}
    for folder in (tmp_path / "run", tmp_path / "dpo"):
        for path in folder.rglob("*"):
            if path.is_file():
                texts[str(path)] = path.read_bytes().decode("latin-1")
                if path.suffix == ".parquet":
                    texts[f"{path} rows"] = json.dumps(pq.read_table(path).to_pylist())
    for name, stored in hub.files(REPO).items():
        texts[f"hub:{name}"] = stored.content.decode("latin-1")
    assert len(texts) > 8 and any("sqlite" in name for name in texts)
    for secret in (TOKEN, openai_key):
        leaks = [name for name, text in texts.items() if secret in text]
        assert leaks == [], f"secret found in {leaks}"


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m synth ARGS`` with a clean token environment (its own empty HF_HOME)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    clean["HF_HOME"] = str(Path(constants.HF_TOKEN_PATH).parent)
    return subprocess.run(
        [sys.executable, "-m", "synth", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _data(export: Path) -> list[str]:
    return [p.relative_to(export).as_posix() for p in sorted((export / "data").glob("*.parquet"))]
