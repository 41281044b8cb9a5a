"""Credentials in a model URL are used for the HTTP call and nowhere else: no run file, log, record,
status output or card carries them, and push refuses a folder that holds one."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from synth.dataset.export import export_run
from synth.dataset.hub import PushError, check_no_secrets, plan_push
from synth.engine.logs import redact, redact_urls, url_secrets
from synth.engine.session import resolve_graph, run_session
from synth.engine.status import read_status, render_status
from synth.errors import ModelSpecError
from synth.models.spec import parse_spec, public_spec
from tests.hostile.support import request, seeds

PASSWORD = "Hunter2-very-secret"


def _with_credentials(server: Any) -> str:
    host = server.base_url.split("://", 1)[1]
    return f"openai:scripted@http://alice:{PASSWORD}@{host}"


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_the_public_form_of_a_spec_hides_url_credentials() -> None:
    spec = f"openai:m@http://alice:{PASSWORD}@h:8000/v1?logprobs=vllm"
    parsed = parse_spec(spec)
    assert parsed.base_url == f"http://alice:{PASSWORD}@h:8000/v1"  # the real URL, for the HTTP call
    assert str(parsed) == public_spec(spec) == "openai:m@http://alice:***@h:8000/v1?logprobs=vllm"
    with pytest.raises(ModelSpecError, match=r"credentials read \*\*\*.*pass the real URL") as caught:
        parse_spec(public_spec(spec))  # a redacted copy is refused, never sent as the password
    assert PASSWORD not in str(caught.value)
    with pytest.raises(ModelSpecError, match="unknown option api_key") as caught:
        parse_spec("openai:m@http://h/v1?api_key=sk-abcdef1234567890")
    assert "sk-abcdef1234567890" not in str(caught.value) and "api_key=***" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"POST http://bob:{PASSWORD}@10.0.0.1/v1 failed", PASSWORD),
        ("see https://api.example.com/v1/chat?api_key=AKIA1234567890&x=1", "AKIA1234567890"),
        ("clone https://ghp_abcdefghijklmnopqrstuvwxyz@github.com/o/r", "ghp_abcdefghijklmnopqrstuvwxyz"),
        ("GET /v1?token=tok_99999999 HTTP/1.1", "tok_99999999"),
    ],
)
def test_url_credentials_are_found_and_redacted(text: str, secret: str) -> None:
    assert url_secrets(text) == [secret]
    assert secret not in redact_urls(text) and secret not in redact(text, [])
    assert "***" in redact_urls(text)
    assert url_secrets("http://127.0.0.1:8000/v1 and key=value and ssh://git@github.com") == []


async def test_no_run_file_status_or_card_carries_the_password(tmp_path: Path, openai_server: Any) -> None:
    spec = _with_credentials(openai_server)
    req = request(
        tmp_path,
        openai_server,
        seeds(tmp_path / "s.jsonl", ["a", "b"]),
        models={"default": spec, "answerer": spec},
    )
    summary, folder = await run_session(req)
    assert dict(summary.counts) == {"ok": 2}  # the credentials did reach the server's URL
    assert PASSWORD.encode() not in _all_bytes(folder)
    assert b"alice:***@" in (folder / "config.yaml").read_bytes()
    console = Console(file=io.StringIO(), width=200)
    render_status(read_status(folder), console)
    assert PASSWORD not in console.file.getvalue()  # type: ignore[attr-defined]
    export_run(folder, resolve_graph(req.graph), "sft", tmp_path / "sft")
    card = (tmp_path / "sft" / "README.md").read_text()
    assert PASSWORD not in card and "alice:***@" in card
    assert PASSWORD.encode() not in _all_bytes(tmp_path / "sft")
    summary, _ = await run_session(req)  # the same run resumes: the public form is stable
    assert summary.skipped == 2


def test_an_unreachable_url_with_credentials_fails_rows_without_them(
    tmp_path: Path, openai_server: Any
) -> None:
    spec = f"openai:m@http://alice:{PASSWORD}@127.0.0.1:9/v1"  # nothing listens on port 9
    req = request(tmp_path, openai_server, seeds(tmp_path / "s.jsonl", ["a"]), models={"default": spec})
    summary, folder = asyncio.run(run_session(req))
    assert dict(summary.counts) == {"failed": 1}
    assert PASSWORD.encode() not in _all_bytes(folder)


async def test_push_refuses_a_folder_holding_url_credentials(tmp_path: Path, openai_server: Any) -> None:
    leaked = "http://h/v1?api_key=sk-live-0123456789abcdef"
    req = request(tmp_path, openai_server, seeds(tmp_path / "s.jsonl", [f"why does {leaked} fail?"]))
    _, folder = await run_session(req)
    export_run(folder, resolve_graph(req.graph), "sft", tmp_path / "sft")
    assert "sk-live-0123456789abcdef" not in (tmp_path / "sft" / "README.md").read_text()  # card: redacted
    plan = plan_push(tmp_path / "sft", "alice/data")
    with pytest.raises(PushError, match=r"data/.*URL with embedded credentials") as caught:
        check_no_secrets(plan, {})  # the data cell still holds it: the push is refused
    assert "sk-live" not in str(caught.value)


async def test_an_option_value_with_url_credentials_is_not_written(
    tmp_path: Path, openai_server: Any
) -> None:
    from synth.engine.store import RunStore

    store = RunStore(tmp_path / "run")
    store.write_config(
        {"graph": "g", "options": {"corpus": f"https://bob:{PASSWORD}@files.example/c.jsonl"}}, "f"
    )
    store.close()
    text = (tmp_path / "run" / "config.yaml").read_text()
    assert PASSWORD not in text and "bob:***@files.example" in text
