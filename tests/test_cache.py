"""The call cache: what goes into a key, hits and misses through ManagedClient, persistence, and re-runs."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from autogen_core.models import CreateResult, RequestUsage, SystemMessage, UserMessage
from autogen_ext.models.replay import ReplayChatCompletionClient
from pydantic import BaseModel

from synth.engine.cache import CALL_SCOPE, CallCache, call_key, score_key
from synth.engine.session import RunRequest, run_session
from synth.engine.store import RunStore
from synth.models import ClientOptions, ManagedClient, ScoreRequest
from synth.recording import SAMPLE_KEY
from synth.testing.graphs import echo_responder

MESSAGES = [SystemMessage(content="be brief"), UserMessage(content="hi there", source="user")]


class Out(BaseModel):
    answer: str


class Other(BaseModel):
    verdict: str


class Counting(ReplayChatCompletionClient):
    """Answers ``reply <n>`` (n = call number); can fail on demand; records the args it was sent."""

    def __init__(self) -> None:
        super().__init__(["unused"])
        self.calls = 0
        self.fail_next: BaseException | None = None
        self.seen_args: list[dict[str, Any]] = []
        self.scored: list[str] = []

    async def create(self, messages: Any, **kwargs: Any) -> CreateResult:  # type: ignore[override]
        self.seen_args.append(dict(kwargs.get("extra_create_args", {})))
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        self.calls += 1
        return CreateResult(
            finish_reason="stop", content=f"reply {self.calls}", usage=RequestUsage(5, 2), cached=False
        )

    async def continuation_nll(self, requests: Sequence[ScoreRequest]) -> list[float]:
        self.scored += [r.continuation for r in requests]
        return [float(len(r.continuation)) for r in requests]


def test_key_covers_everything_that_changes_the_answer() -> None:
    base = call_key("openai:m", MESSAGES, {"temperature": 0.7}, json_output=Out, scope="row:a#0")
    same = call_key("openai:m", list(MESSAGES), {"temperature": 0.7}, json_output=Out, scope="row:a#0")
    assert base == same
    variants = [
        call_key("openai:other", MESSAGES, {"temperature": 0.7}, json_output=Out, scope="row:a#0"),
        call_key("openai:m", MESSAGES[1:], {"temperature": 0.7}, json_output=Out, scope="row:a#0"),
        call_key("openai:m", MESSAGES, {"temperature": 0.8}, json_output=Out, scope="row:a#0"),
        call_key("openai:m", MESSAGES, {"temperature": 0.7}, json_output=Other, scope="row:a#0"),
        call_key("openai:m", MESSAGES, {"temperature": 0.7}, json_output=None, scope="row:a#0"),
        call_key("openai:m", MESSAGES, {"temperature": 0.7}, json_output=Out, sample=1, scope="row:a#0"),
        call_key("openai:m", MESSAGES, {"temperature": 0.7}, json_output=Out, scope="row:a#1"),
    ]
    assert len({base, *variants}) == 1 + len(variants)
    assert score_key("local:x", MESSAGES, "a") != score_key("local:x", MESSAGES, "b")


async def test_hits_skip_the_backend_and_the_sample_index_is_never_sent(tmp_path: Path) -> None:
    """Free-text calls (a reply that fails a requested schema is never cached: tests/hostile)."""
    inner = Counting()
    cache = CallCache(tmp_path / "calls.sqlite")
    client = ManagedClient(inner, ClientOptions(sampling={"temperature": 0.9}), spec="fake:m", cache=cache)
    first = await client.create(MESSAGES, json_output=None)
    again = await client.create(MESSAGES, json_output=None)
    assert (first.content, first.cached, again.content, again.cached) == ("reply 1", False, "reply 1", True)
    assert again.usage == first.usage and inner.calls == 1
    # Samples of one prompt stay distinct; the index reaches the key, never the backend.
    s1 = await client.create(MESSAGES, json_output=None, extra_create_args={SAMPLE_KEY: 1})
    s1_again = await client.create(MESSAGES, json_output=None, extra_create_args={SAMPLE_KEY: 1})
    assert (s1.content, s1_again.content, inner.calls) == ("reply 2", "reply 2", 2)
    assert all(SAMPLE_KEY not in args for args in inner.seen_args)
    assert inner.seen_args[-1] == {"temperature": 0.9}
    stats = client.stats()
    assert (stats.cache_hits, stats.calls) == (2, 2)
    cache.close()
    reopened = CallCache(tmp_path / "calls.sqlite")
    assert len(reopened) == 2
    client.cache = reopened
    assert (await client.create(MESSAGES, json_output=None)).cached
    reopened.close()


async def test_sample_index_is_stripped_without_a_cache() -> None:
    inner = Counting()
    await ManagedClient(inner).create(MESSAGES, extra_create_args={SAMPLE_KEY: 3, "seed": 1})
    assert inner.seen_args == [{"seed": 1}]


async def test_errors_are_never_cached(tmp_path: Path) -> None:
    inner = Counting()
    cache = CallCache(tmp_path / "calls.sqlite")
    client = ManagedClient(inner, spec="fake:m", cache=cache)
    inner.fail_next = ValueError("bad request")
    with pytest.raises(ValueError):
        await client.create(MESSAGES)
    assert len(cache) == 0
    assert (await client.create(MESSAGES)).content == "reply 1"
    assert (await client.create(MESSAGES)).cached
    cache.close()


async def test_rows_scope_keeps_duplicate_rows_apart(tmp_path: Path) -> None:
    cache = CallCache(tmp_path / "calls.sqlite")
    client = ManagedClient(Counting(), spec="fake:m", cache=cache)

    async def in_row(scope: str) -> str:
        CALL_SCOPE.set(scope)
        return str((await client.create(MESSAGES)).content)

    first, twin = await asyncio.gather(in_row("row:x#0"), in_row("row:x#1"))
    assert first != twin
    assert await asyncio.create_task(in_row("row:x#1")) == twin
    cache.close()


async def test_streams_and_scores_are_cached(tmp_path: Path) -> None:
    inner = Counting()
    cache = CallCache(tmp_path / "calls.sqlite")
    client = ManagedClient(inner, spec="fake:m", cache=cache)
    chunks = [c async for c in client.create_stream(MESSAGES)]
    replay = [c async for c in client.create_stream(MESSAGES)]
    assert isinstance(replay[-1], CreateResult) and replay[-1].cached and len(replay) == 1
    assert replay[-1].content == chunks[-1].content  # type: ignore[union-attr]
    scores = await client.continuation_nll([ScoreRequest(MESSAGES, "ab"), ScoreRequest(MESSAGES, "abc")])
    more = await client.continuation_nll([ScoreRequest(MESSAGES, "abc"), ScoreRequest(MESSAGES, "abcd")])
    assert (scores, more) == ([2.0, 3.0], [3.0, 4.0])
    assert inner.scored == ["ab", "abc", "abcd"]  # only the miss went to the backend
    cache.close()


def _seeds(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def test_a_rerun_of_lost_records_is_served_from_the_cache(tmp_path: Path, openai_server: Any) -> None:
    openai_server.script(echo_responder)
    seeds = _seeds(tmp_path / "seeds.jsonl", [f"row {i}" for i in range(8)] + ["row 0"])
    request = RunRequest(
        graph="synth.testing.graphs:CHAIN",
        input=seeds,
        out=tmp_path / "run",
        models={"default": f"openai:m@{openai_server.base_url}"},
        concurrency=4,
    )
    first, folder = asyncio.run(run_session(request))
    paid = openai_server.stats()["completions"]
    assert first.counts["ok"] == 9 and paid == 27
    cache = CallCache(folder / "calls.sqlite")
    assert len(cache) == 27  # the duplicate "row 0" has its own entries
    cache.close()
    store = RunStore(folder)
    before = {r.id: r.result for r in store.iter_records()}
    store.reset()  # as if the records were lost: every call must come back from the cache
    store.close()
    again, _ = asyncio.run(run_session(request))
    assert openai_server.stats()["completions"] == paid
    assert again.usage.cached_calls == again.usage.calls == 27
    assert again.clients[next(iter(again.clients))]["cache_hits"] == 27
    store = RunStore(folder)
    assert {r.id: r.result for r in store.iter_records()} == before
    store.close()
    # --no-cache: the same re-run pays again, and nothing is read from the cache.
    store = RunStore(folder)
    store.reset()
    store.close()
    uncached, _ = asyncio.run(run_session(request.model_copy(update={"cache": False})))
    assert openai_server.stats()["completions"] == 2 * paid and uncached.usage.cached_calls == 0


async def test_writes_commit_together_on_the_loop_within_the_window(tmp_path: Path) -> None:
    """No writer thread: pending writes are visible to lookups at once and reach the file within
    COALESCE_S in one commit, from a timer on the running loop (nobody calls flush or close here)."""
    import sqlite3

    from synth.engine.cache import COALESCE_S

    cache = CallCache(tmp_path / "calls.sqlite")
    try:
        cache.put("a", "create", "1")
        cache.put("b", "create", "2")
        cache.discard("a")
        assert cache.get("b") == "2" and cache.get("a") is None

        def on_disk() -> dict[str, str]:
            with sqlite3.connect(tmp_path / "calls.sqlite") as db:  # what a re-run would see
                return dict(db.execute("SELECT key, value FROM calls").fetchall())

        assert on_disk() == {}
        await asyncio.sleep(COALESCE_S * 3)
        assert on_disk() == {"b": "2"} and cache.stats().writes == 2
        assert not any(t.name == "synth-call-cache" for t in threading.enumerate())
    finally:
        cache.close()
