"""`synth check` and the preflight of `synth run`, against the loopback server and a closed port."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from synth.engine.session import RunRequest, run_session
from synth.engine.store import RunStore
from synth.models.preflight import PreflightError, check_spec
from tests.coevol_script import coevol_responder

ROOT = Path(__file__).resolve().parent.parent


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def probe_or_coevol(request: dict[str, Any]) -> str:
    if "Are you there?" in request["messages"][-1]["content"]:
        return '{"ok": true}'
    return coevol_responder(request)


def chatty(request: dict[str, Any]) -> str:
    """A server that ignores response_format and wraps its JSON in prose."""
    return f"Sure:\n```json\n{probe_or_coevol(request)}\n```"


def test_check_reports_mode_latency_and_max_calls(openai_server: Any) -> None:
    openai_server.model = "scripted"
    openai_server.script(probe_or_coevol)
    report = asyncio.run(check_spec(f"openai:scripted@{openai_server.base_url}"))
    assert report.served == ["scripted"] and report.structured == "json_schema"
    assert report.latency_s is not None and report.suggested_max_calls is not None
    text = "\n".join(report.lines())
    assert "structured:   json_schema (detected" in text and "suggested --max-calls" in text

    openai_server.script(chatty)
    report = asyncio.run(check_spec(f"openai:scripted@{openai_server.base_url}", parallel=False))
    assert report.structured == "prompt" and "ignored or rejected response_format" in report.structured_from


def test_unknown_model_and_unreachable_url_fail_fast_without_credentials(openai_server: Any) -> None:
    with pytest.raises(
        PreflightError, match=r"model 'nope' is not served by http://127.0.0.1:\d+/v1; it serves"
    ):
        asyncio.run(check_spec(f"openai:nope@{openai_server.base_url}"))
    port = closed_port()
    started = time.monotonic()
    with pytest.raises(PreflightError) as caught:
        asyncio.run(check_spec(f"openai:m@http://user:s3cret@127.0.0.1:{port}/v1"))
    message = str(caught.value)
    assert time.monotonic() - started < 10
    assert f"cannot reach http://127.0.0.1:{port}/v1" in message and "synth check" in message
    assert "s3cret" not in message


def test_synth_run_with_a_wrong_url_exits_in_seconds_before_any_row(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"instruction": "x"}) + "\n")
    port = closed_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SYNTH_CHECK": "1"}  # the suite turns it off (conftest)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "synth", "run", "coevol", "-i", str(seeds), "-o", str(tmp_path / "run"),
         "-m", f"openai:m@http://127.0.0.1:{port}/v1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert time.monotonic() - started < 60
    assert f"cannot reach http://127.0.0.1:{port}/v1" in done.stderr and "synth check" in done.stderr
    assert not (tmp_path / "run").exists()


def test_the_preflight_sets_the_detected_mode_for_the_run(tmp_path: Path, openai_server: Any) -> None:
    openai_server.model = "scripted"
    openai_server.script(chatty)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"instruction": "ACCEPT this", "output": "v0"}) + "\n")
    request = RunRequest(
        graph="coevol",
        input=seeds,
        out=tmp_path / "run",
        options={"max_rounds": 1},
        models={"default": f"openai:scripted@{openai_server.base_url}"},
        check=True,
    )
    summary, folder = asyncio.run(run_session(request))
    assert dict(summary.counts) == {"ok": 1}
    [record] = RunStore(folder).iter_records()
    modes = {s.meta.get("structured") for s in record.steps if s.role in ("editor", "judge", "advisor")}
    assert modes == {"prompt"}
    run_calls = [r for r in openai_server.requests if "Are you there?" not in r["messages"][-1]["content"]]
    assert run_calls and not any("response_format" in r for r in run_calls), "no json_schema probe in the run"


def test_call_budget_caps_a_call_with_retries(tmp_path: Path, openai_server: Any) -> None:
    """Every attempt hangs: without a budget one call costs (1 + retries) x timeout; with it, the budget."""
    openai_server.script(coevol_responder)
    openai_server.set_latency(5.0)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"instruction": "ACCEPT this"}) + "\n")
    request = RunRequest(
        graph="coevol",
        input=seeds,
        out=tmp_path / "run",
        models={"default": f"openai:scripted@{openai_server.base_url}"},
        timeout=0.5,
        retries=5,
        backoff=0.05,
        call_budget=1.2,
    )
    started = time.monotonic()
    _, folder = asyncio.run(run_session(request))
    assert time.monotonic() - started < 8
    [record] = RunStore(folder).iter_records()
    step = record.steps[0]
    assert record.status == "failed" and step.error_reason == "timeout"
    assert "call budget of 1.2 s spent (attempts, retries and backoff together)" in (step.error or "")


def test_an_attempt_timeout_says_how_long_and_what_to_change(tmp_path: Path, openai_server: Any) -> None:
    openai_server.script(coevol_responder)
    openai_server.set_latency(3.0)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"instruction": "ACCEPT this"}) + "\n")
    request = RunRequest(
        graph="coevol",
        input=seeds,
        out=tmp_path / "run",
        models={"default": f"openai:scripted@{openai_server.base_url}"},
        timeout=0.3,
        retries=0,
    )
    _, folder = asyncio.run(run_session(request))
    [record] = RunStore(folder).iter_records()
    assert "TimeoutError: timed out after 0.3 s waiting for the reply" in (record.steps[0].error or "")
