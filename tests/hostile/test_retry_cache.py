"""``--retry-failed`` after invalid output: the call cache must not replay a reply that failed validation.

The first run gets an unparseable reply (and an unparseable repair) for one row; the server is then
fixed and the row retried. Before the fix, the cache served the stored bad replies and no request
reached the server, so the row could never recover.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from synth.engine.cache import CallCache
from synth.engine.session import CACHE_FILE, RunRequest, run_session
from synth.engine.store import RunStore
from synth.testing.graphs import echo_responder
from synth.testing.openai_server import OpenAIServer

BAD = "bad row"


class Flaky:
    """Answers the ``BAD`` row with broken JSON while ``broken`` is set; every other row echoes."""

    broken = True

    def __call__(self, request: dict[str, Any]) -> str:
        users = [m["content"] for m in request["messages"] if m["role"] == "user"]
        if self.broken and BAD in users[0]:
            return '{"answer": "cut off'
        return echo_responder(request)


def records(folder: Path) -> dict[str, Any]:
    store = RunStore(folder)
    try:
        return {r.seed["text"]: r for r in store.iter_records()}
    finally:
        store.close()


def test_retry_failed_re_asks_the_server_for_a_reply_that_failed_validation(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["good row", BAD]))
    responder = Flaky()
    with OpenAIServer(responder) as server:
        request = RunRequest(
            graph="synth.testing.graphs:ECHO",
            input=seeds,
            out=tmp_path / "run",
            models={"default": f"openai:m@{server.base_url}"},
            concurrency=2,
        )
        asyncio.run(run_session(request))
        first = records(tmp_path / "run")
        assert first[BAD].status == "failed" and "(validation)" in (first[BAD].error or "")
        assert first[BAD].steps[-1].repaired and first[BAD].steps[-1].raw == '{"answer": "cut off'

        responder.broken = False
        server.reset_counters()
        again, _ = asyncio.run(run_session(request.model_copy(update={"retry_failed": True})))
        assert server.stats()["completions"] == 1  # the retried call reached the server
        after = records(tmp_path / "run")
        assert after[BAD].status == "ok" and after[BAD].result["answer"] == f"echo({BAD})"
        assert again.written == 1 and again.skipped == 1


def test_a_cached_reply_that_fails_validation_is_dropped_and_asked_again(tmp_path: Path) -> None:
    """A cache written before this fix (or by another tool) may hold an invalid reply: never trust it."""
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"text": BAD}) + "\n")
    responder = Flaky()
    responder.broken = False
    with OpenAIServer(responder) as server:
        request = RunRequest(
            graph="synth.testing.graphs:ECHO",
            input=seeds,
            out=tmp_path / "run",
            models={"default": f"openai:m@{server.base_url}"},
        )
        asyncio.run(run_session(request))
        cache = CallCache(tmp_path / "run" / CACHE_FILE)
        (key,) = [row[0] for row in cache._db.execute("SELECT key FROM calls")]
        stored = cache.get_result(key)
        assert stored is not None
        cache.put_result(key, stored.model_copy(update={"content": '{"answer": 3'}))
        cache.close()
        (tmp_path / "run" / "records.sqlite").unlink()  # run the row again, over the poisoned cache
        server.reset_counters()
        asyncio.run(run_session(request.model_copy(update={"force": True})))
        # Asked again as the same call, not answered by a repair turn built on the poisoned reply.
        assert [len(r["messages"]) for r in server.requests] == [2]
        record = records(tmp_path / "run")[BAD]
        assert record.status == "ok" and not record.steps[-1].repaired
