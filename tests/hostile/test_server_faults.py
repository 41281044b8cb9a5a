"""Misbehaving servers over real HTTP: garbage 200s, oversized replies, drip-fed bodies.

Each case points a real client stack (make_client -> ManagedClient -> autogen -> openai SDK -> httpx) at
the loopback server with one fault, and checks what the caller gets: a retry that recovers, or a final
error that says what came back and which limit or flag applies.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from autogen_core.models import UserMessage

from synth.engine.session import RunRequest, run_session
from synth.models import ClientOptions, ManagedClient, make_client
from synth.models.reply_guard import GarbageReplyError, ReplyTooLargeError
from synth.testing.graphs import echo_responder
from synth.testing.openai_server import OpenAIServer, build_parser
from synth.testing.replies import GARBAGE_KINDS, Reply

MESSAGES = [UserMessage(content="What is the capital of France?", source="user")]
_OPEN: list[ManagedClient] = []


async def _no_sleep(_seconds: float) -> None:
    """Backoff without waiting: the tests count attempts, not seconds."""


def managed(server: OpenAIServer, **options: object) -> ManagedClient:
    opts = ClientOptions(**{"timeout_s": 5.0, "max_retries": 3, **options})  # type: ignore[arg-type]
    client = make_client(f"openai:m@{server.base_url}", opts, sleep=_no_sleep)
    _OPEN.append(client)
    return client


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _OPEN:
        await _OPEN.pop().close()


@pytest.mark.parametrize("kind", GARBAGE_KINDS)
async def test_garbage_200_is_retried_like_a_5xx(openai_server: OpenAIServer, kind: str) -> None:
    openai_server.script("Paris")
    openai_server.set_faults(fail_first=2, fail_first_with=kind)
    client = managed(openai_server)
    result = await client.create(MESSAGES)
    assert result.content == "Paris"
    assert openai_server.stats()["by_outcome"] == {kind: 2, "ok": 1}
    stats = client.stats()
    assert stats.retries == 2 and stats.errors == {"GarbageReplyError": 2}


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("empty", "server returned HTTP 200 with an empty body"),
        ("html", "server returned HTTP 200 with a body that is not JSON (content-type text/html"),
        ("no_choices", 'server returned HTTP 200 with no choices (body starts: \'{"id": "chatcmpl-0"'),
        ("error_200", 'server returned HTTP 200 with an error instead of choices (body starts: \'{"error"'),
    ],
)
async def test_garbage_200_names_what_came_back_when_retries_run_out(
    openai_server: OpenAIServer, kind: str, reason: str
) -> None:
    openai_server.script(Reply(fault=kind))
    client = managed(openai_server, max_retries=2)
    with pytest.raises(GarbageReplyError) as caught:
        await client.create(MESSAGES)
    assert str(caught.value).startswith(reason)
    notes = "\n".join(caught.value.__notes__)
    assert "retries exhausted after 3 attempt(s)" in notes and reason[:40] in notes
    assert openai_server.stats()["completions"] == 3


async def test_a_reply_over_the_size_limit_fails_once_naming_the_limit_and_the_flag(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script("word " * 400_000)  # a ~2 MB reply
    client = managed(openai_server, max_reply_bytes=100_000)
    with pytest.raises(ReplyTooLargeError) as caught:
        await client.create(MESSAGES)
    message = str(caught.value)
    assert "over the limit of 100000 bytes (--max-reply-bytes 100000)" in message
    assert "raise it with --max-reply-bytes N" in message
    assert openai_server.stats()["completions"] == 1  # not retried: the same request gets the same reply
    assert client.stats().errors == {"ReplyTooLargeError": 1}
    openai_server.script("Paris")  # the limit leaves ordinary replies alone
    assert (await client.create(MESSAGES)).content == "Paris"


async def test_a_streamed_reply_over_the_size_limit_is_cut_off(openai_server: OpenAIServer) -> None:
    """Streams have no Content-Length: the cap counts bytes as they arrive."""
    openai_server.script("word " * 100_000)
    client = managed(openai_server, max_reply_bytes=50_000)
    with pytest.raises(ReplyTooLargeError, match="--max-reply-bytes 50000"):
        async for _ in client.create_stream(MESSAGES):
            pass


async def test_a_drip_fed_reply_hits_the_per_call_timeout(openai_server: OpenAIServer) -> None:
    """Every read returns a byte within the SDK's read timeout; only the per-call deadline ends it."""
    openai_server.script("Paris " * 50)
    openai_server.set_faults(drip=1.0, drip_interval_s=0.02, drip_bytes=1)
    client = managed(openai_server, timeout_s=0.5, max_retries=1)
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        await client.create(MESSAGES)
    assert time.perf_counter() - started < 3.0
    assert client.stats().attempts == 2 and openai_server.stats()["by_outcome"].get("drip") == 2


@pytest.mark.parametrize("transport", ["aiohttp (openai.DefaultAioHttpClient)", "legacy httpx + aiohttp"])
async def test_the_guard_holds_on_other_http_transports(openai_server: OpenAIServer, transport: str) -> None:
    """The checks sit in an httpx response hook, so they follow the client whatever its transport."""
    import httpx_aiohttp
    import openai

    http = (
        openai.DefaultAioHttpClient()
        if transport.startswith("aiohttp")
        else httpx_aiohttp.HttpxAiohttpClient()
    )
    client = managed(openai_server, max_reply_bytes=100_000, backend_options={"http_client": http})
    openai_server.script("Paris")
    openai_server.set_faults(fail_first=1, fail_first_with="html")
    assert (await client.create(MESSAGES)).content == "Paris"
    assert client.stats().errors == {"GarbageReplyError": 1}
    openai_server.script("word " * 100_000)
    with pytest.raises(ReplyTooLargeError):
        async for _ in client.create_stream(MESSAGES):
            pass


def test_a_run_through_garbage_200s_and_drips_loses_no_row(tmp_path: Path) -> None:
    """Before the fix each garbage 200 failed its row on the first attempt."""
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(60)))
    with OpenAIServer(echo_responder) as server:
        server.set_faults(garbage_200=0.25, drip=0.05, drip_interval_s=0.001, drip_bytes=64, seed=5)
        request = RunRequest(
            graph="synth.testing.graphs:ECHO",
            input=seeds,
            out=tmp_path / "run",
            models={"default": f"openai:m@{server.base_url}"},
            concurrency=8,
            retries=6,
            backoff=0.001,
        )
        summary, _ = asyncio.run(run_session(request))
        outcomes = server.stats()["by_outcome"]
    assert summary.counts == {"ok": 60}
    assert all(outcomes.get(kind, 0) > 0 for kind in (*GARBAGE_KINDS, "drip")), outcomes
    errors = next(iter(summary.clients.values()))["errors"]
    assert errors == {"GarbageReplyError": sum(outcomes[k] for k in GARBAGE_KINDS)}


def test_process_mode_server_takes_the_new_fault_flags() -> None:
    args = build_parser().parse_args(["--garbage-200", "0.1", "--drip", "0.05", "--drip-interval-s", "0.2"])
    assert (args.faults_garbage_200, args.faults_drip, args.faults_drip_interval_s) == (0.1, 0.05, 0.2)
