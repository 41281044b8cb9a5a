"""Structured output on servers that ignore response_format: detection, fallback, modes, per step."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from synth.engine.session import RunRequest, run_session
from synth.engine.store import RunStore
from synth.errors import ModelSpecError
from synth.models.spec import parse_spec
from synth.models.structured import extract_json
from tests.coevol_script import coevol_responder


def test_extract_json_and_spec_option() -> None:
    assert extract_json('Sure!\n```json\n{"a": {"b": 1}}\n```\nDone {x}') == '{"a": {"b": 1}}'
    assert extract_json("no json [1, 2] here") is None
    spec = parse_spec("openai:m@http://127.0.0.1:8000/v1?logprobs=vllm&structured=prompt")
    assert spec.structured == "prompt" and str(spec).endswith("?logprobs=vllm&structured=prompt")
    with pytest.raises(ModelSpecError, match="structured=xml is not a mode; use one of json_schema"):
        parse_spec("openai:m@http://127.0.0.1:8000/v1?structured=xml")


DEBATERS = ("positive_debater", "critical_debater")  # turns of an AutoGen team, not Role.run


def chatty(request: dict[str, Any]) -> str:
    """A server that ignores response_format: JSON wrapped in prose and a code fence."""
    return f"Here is my answer:\n```json\n{coevol_responder(request)}\n```\nHope it helps."


def _run(tmp_path: Path, server: Any, query: str = "") -> list[Any]:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"instruction": "ACCEPT this", "output": "v0"}) + "\n")
    request = RunRequest(
        graph="coevol",
        input=seeds,
        out=tmp_path / "run",
        options={"max_rounds": 1},
        models={"default": f"openai:scripted@{server.base_url}{query}"},
        concurrency=1,
        new=True,
    )
    import asyncio

    summary, folder = asyncio.run(run_session(request))
    assert dict(summary.counts) == {"ok": 1}, [r.error for r in RunStore(folder).iter_records()]
    [record] = RunStore(folder).iter_records()
    return [s for s in record.steps if s.role in ("advisor", "editor", "judge", *DEBATERS)]


def test_ignored_response_format_falls_back_to_prompt_mode_once(
    tmp_path: Path, openai_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the preflight (`--no-check`, library use) the client finds out by itself: one malformed
    reply may be the model's, two in a row before any JSON object mean the server ignores the schema.
    The first row's debate (no repair turn) fails on the first reply; from the second reply on the client
    is in prompt mode and the next row succeeds."""
    openai_server.script(chatty)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        "".join(json.dumps({"instruction": f"ACCEPT {i}", "output": "v0"}) + "\n" for i in (1, 2))
    )
    request = RunRequest(
        graph="coevol",
        input=seeds,
        out=tmp_path / "run",
        options={"max_rounds": 1},
        models={"default": f"openai:scripted@{openai_server.base_url}"},
        concurrency=1,
    )
    import asyncio

    with caplog.at_level(logging.WARNING, logger="synth.structured"):
        asyncio.run(run_session(request))
    records = {r.seed["instruction"]: r for r in RunStore(tmp_path / "run").iter_records()}
    assert records["ACCEPT 1"].status == "failed" and records["ACCEPT 2"].status == "ok"
    steps = [s for s in records["ACCEPT 2"].steps if s.role in ("advisor", "editor", "judge")]
    assert steps and {s.meta.get("structured") for s in steps} == {"prompt"}
    warnings = [r for r in caplog.records if "server ignored response_format" in r.getMessage()]
    assert len(warnings) == 1
    prompted = [r for r in openai_server.requests if "response_format" not in r]
    assert prompted and all("matches this JSON schema" in r["messages"][0]["content"] for r in prompted)


@pytest.mark.parametrize("mode", ["json_object", "prompt"])
def test_mode_from_the_spec(tmp_path: Path, openai_server: Any, mode: str) -> None:
    openai_server.script(chatty)
    steps = _run(tmp_path, openai_server, f"?structured={mode}")
    assert {s.role for s in steps} >= set(DEBATERS)  # debate turns record their mode too
    assert {s.meta.get("structured") for s in steps} == {mode}, [(s.role, s.meta) for s in steps]
    formats = {json.dumps(r.get("response_format"), sort_keys=True) for r in openai_server.requests}
    wanted = {"json_object": '{"type": "json_object"}', "prompt": "null"}[mode]
    assert wanted in formats and not any("json_schema" in f for f in formats)


def test_a_server_that_honours_json_schema_keeps_it(tmp_path: Path, openai_server: Any) -> None:
    openai_server.script(coevol_responder)
    steps = _run(tmp_path, openai_server)
    assert {s.meta.get("structured") for s in steps} == {"json_schema"}
