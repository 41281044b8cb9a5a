"""Chaos: 300 rows through the whole runner against a server that fails a quarter of its requests.

Faults per request (seeded): 10 % HTTP 500, 5 % 429 with Retry-After, 3 % hangs (only the client timeout
ends them), 5 % malformed JSON content (the role's repair turn handles it), 2 % TCP resets. One row is
doomed (its every request answers 503). Every row must come out exactly once — ok, or failed with a reason
and the retry history — and ``--retry-failed`` must then touch only the failed rows.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import openai
from autogen_core.models import CreateResult, RequestUsage, UserMessage
from autogen_ext.models.replay import ReplayChatCompletionClient

from synth.engine.logs import read_events
from synth.engine.session import RunRequest, run_session
from synth.engine.store import RunStore
from synth.models import ClientOptions, ManagedClient
from synth.testing.graphs import echo_responder
from synth.testing.openai_server import OpenAIServer
from synth.testing.replies import Reply

ROWS = 300
DOOMED = "row 13 DOOMED"


def first_user_text(request: dict[str, Any]) -> str:
    """The row's prompt (a repair turn's last user message is the repair instruction)."""
    return next(m["content"] for m in request["messages"] if m["role"] == "user")  # type: ignore[no-any-return]


def responder(request: dict[str, Any]) -> Reply | str:
    if "DOOMED" in first_user_text(request):  # the row's prompt: a repair turn must fail too
        return Reply(status=503, error="the upstream model is overloaded")
    return echo_responder(request)


def texts() -> list[str]:
    return [DOOMED if i == 13 else f"row {i}" for i in range(ROWS)]


def test_every_row_is_accounted_for_under_faults(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts()))
    with OpenAIServer(responder, log_limit=5000) as server:
        server.set_faults(
            error_500=0.10,
            rate_limit_429=0.05,
            hang=0.03,
            malformed=0.05,
            reset=0.02,
            retry_after_s=0.05,
            hang_max_s=10.0,
            seed=7,
        )
        request = RunRequest(
            graph="synth.testing.graphs:ECHO",
            input=seeds,
            out=tmp_path / "run",
            models={"default": f"openai:m@{server.base_url}"},
            concurrency=32,
            max_calls=32,
            timeout=1.0,
            retries=4,
            backoff=0.01,
        )
        summary, folder = asyncio.run(run_session(request))
        outcomes = server.stats()["by_outcome"]

        store = RunStore(folder)
        records = list(store.iter_records())
        store.close()
        assert len(records) == ROWS == len({r.id for r in records}) == summary.written
        assert sorted(r.seed["text"] for r in records) == sorted(texts())
        for fault in ("500", "429", "hang", "malformed", "reset"):
            assert outcomes.get(fault, 0) > 0, f"no {fault} fault was injected: {outcomes}"
        ok = [r for r in records if r.status == "ok"]
        failed = {r.seed["text"]: r for r in records if r.status == "failed"}
        # No cross-talk between rows: every answer is its own row's.
        assert all(r.result["answer"] == f"echo({r.seed['text']})" for r in ok)
        assert any(s.repaired for r in ok for s in r.steps), "malformed replies were never repaired"
        assert all(r.error and "role 'echo' failed" in r.error for r in failed.values())
        doomed = failed[DOOMED].error or ""
        assert "retries exhausted after 5 attempt(s)" in doomed  # the whole retry history is kept
        client = next(iter(summary.clients.values()))
        assert client["retries"] > 0 and client["max_in_flight"] <= 32
        for error in ("InternalServerError", "RateLimitError", "TimeoutError", "APIConnectionError"):
            assert client["errors"].get(error, 0) > 0, client["errors"]
        events = list(read_events(folder / "log.jsonl"))
        assert events[0]["event"] == "run_start" and events[-1]["event"] == "run_end"
        assert events[-1]["counts"] == dict(summary.counts)
        assert Counter(e["id"] for e in events if e["event"] == "row_failed") == Counter(
            r.id for r in failed.values()
        )

        # --retry-failed, faults off: only the failed rows are sent again; backend failures recover.
        server.clear_faults()
        server.reset_counters()
        again, _ = asyncio.run(run_session(request.model_copy(update={"retry_failed": True})))
        retried = {first_user_text(r).removeprefix("Text: ") for r in server.requests}
        assert retried <= set(failed) and DOOMED in retried
        assert again.skipped == ROWS - len(failed) and again.written == len(failed)
        store = RunStore(folder)
        after = {r.seed["text"]: r for r in store.iter_records()}
        store.close()
        assert len(after) == ROWS and after[DOOMED].status == "failed"
        # Every other failure was transient and must now be ok — invalid replies included: a reply that
        # failed validation is never cached, so the retry asks the server again.
        assert all(after[t].status == "ok" for t in failed if t != DOOMED)


# -- adaptive concurrency (--adaptive) ------------------------------------------------------------------
class Capacity(ReplayChatCompletionClient):
    """A backend that serves ``capacity`` calls at once (10 ms each) and answers 429 beyond that."""

    def __init__(self, capacity: int) -> None:
        super().__init__(["unused"])
        self.capacity, self.active, self.peak, self.rejected = capacity, 0, 0, 0

    async def create(self, messages: Any, **kwargs: Any) -> CreateResult:  # type: ignore[override]
        if self.active >= self.capacity:
            self.rejected += 1
            response = httpx.Response(429, headers={"retry-after": "0.01"}, request=REQUEST)
            raise openai.RateLimitError("slow down", response=response, body=None)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(0.01)
        finally:
            self.active -= 1
        return CreateResult(finish_reason="stop", content="ok", usage=RequestUsage(1, 1), cached=False)


REQUEST = httpx.Request("POST", "http://test/v1/chat/completions")
MESSAGES = [UserMessage(content="hi", source="user")]


async def _burst(client: ManagedClient, calls: int) -> int:
    results = await asyncio.gather(*(client.create(MESSAGES) for _ in range(calls)), return_exceptions=True)
    return sum(isinstance(r, CreateResult) for r in results)


async def test_adaptive_concurrency_backs_off_on_429_and_grows_while_latency_holds() -> None:
    options = {"max_concurrency": 32, "max_retries": 8, "backoff_base_s": 0.01}
    fixed_backend, adaptive_backend = Capacity(6), Capacity(6)
    fixed = ManagedClient(fixed_backend, ClientOptions(**options))
    adaptive = ManagedClient(adaptive_backend, ClientOptions(**options, adaptive=True))
    await _burst(fixed, 300)  # some calls may exhaust their retries: a 429 storm
    assert await _burst(adaptive, 300) == 300
    rejected = (adaptive_backend.rejected, fixed_backend.rejected)
    assert rejected[0] * 3 < rejected[1], rejected
    assert adaptive.concurrency_limit() <= 12
    # A backend with room to spare: the limit climbs from its start (4) to the ceiling.
    roomy = Capacity(1000)
    growing = ManagedClient(roomy, ClientOptions(max_concurrency=16, adaptive=True))
    assert await _burst(growing, 600) == 600
    assert growing.concurrency_limit() == 16 and roomy.peak == 16 and roomy.rejected == 0
