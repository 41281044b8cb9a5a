"""ManagedClient policies with in-process fake backends (no HTTP), plus the replay backend."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from autogen_core.models import CreateResult, RequestUsage, UserMessage
from autogen_ext.models.replay import ReplayChatCompletionClient
from pydantic import BaseModel, ValidationError

from synth.errors import ModelSpecError
from synth.models import ClientOptions, ManagedClient, ScoreRequest, SupportsLogprobs, make_client
from synth.models.managed import is_retryable, retry_after_s
from synth.models.replay import ReplayExhaustedError

MESSAGES = [UserMessage(content="hi there", source="user")]
REQUEST = httpx.Request("POST", "http://test/v1/chat/completions")


def status_error(
    status: int, headers: dict[str, str] | None = None, code: str | None = None
) -> openai.APIStatusError:
    response = httpx.Response(status, headers=headers or {}, request=REQUEST)
    body = {"code": code} if code else None
    classes = {400: openai.BadRequestError, 429: openai.RateLimitError, 500: openai.InternalServerError}
    return classes.get(status, openai.APIStatusError)(f"status {status}", response=response, body=body)


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


class Flaky(ReplayChatCompletionClient):
    """Replays "ok", after raising the queued errors, and records how many calls overlap."""

    def __init__(self, errors: Sequence[BaseException] = (), delay: float = 0.0) -> None:
        super().__init__(["ok"] * 100)
        self.errors = list(errors)
        self.delay = delay
        self.active = self.peak = 0
        self.seen_args: list[dict[str, Any]] = []

    async def create(self, messages: Any, **kwargs: Any) -> CreateResult:  # type: ignore[override]
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay)
            self.seen_args.append(dict(kwargs.get("extra_create_args", {})))
            if self.errors:
                raise self.errors.pop(0)
            return CreateResult(finish_reason="stop", content="ok", usage=RequestUsage(3, 1), cached=False)
        finally:
            self.active -= 1


class Scorer(Flaky):
    async def continuation_nll(self, requests: Sequence[ScoreRequest]) -> list[float]:
        if self.errors:
            raise self.errors.pop(0)
        return [float(len(r.continuation)) for r in requests]


def test_retry_classification() -> None:
    assert (
        is_retryable(status_error(500))
        and is_retryable(status_error(503))
        and is_retryable(status_error(429))
    )
    assert is_retryable(status_error(408))
    assert not is_retryable(status_error(400)) and not is_retryable(status_error(404))
    assert not is_retryable(status_error(429, code="insufficient_quota"))
    assert is_retryable(openai.APITimeoutError(request=REQUEST)) and is_retryable(TimeoutError())
    assert is_retryable(openai.APIConnectionError(request=REQUEST))
    assert not is_retryable(ValueError("bad")) and not is_retryable(asyncio.CancelledError())


def test_retry_after_parsing() -> None:
    assert retry_after_s(status_error(429, {"retry-after": "3"})) == 3.0
    assert retry_after_s(status_error(429, {"retry-after": "0.25"})) == 0.25
    assert retry_after_s(status_error(429, {"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 27 <= (retry_after_s(status_error(503, {"retry-after": date})) or 0) <= 30
    assert retry_after_s(status_error(429, {"retry-after": "soon"})) is None
    assert retry_after_s(status_error(500)) is None and retry_after_s(ValueError()) is None


async def test_backoff_grows_is_jittered_and_capped() -> None:
    sleeps = Sleeps()
    inner = Flaky([status_error(500)] * 5)
    client = ManagedClient(
        inner, ClientOptions(backoff_base_s=1, backoff_max_s=4, max_retries=5), sleep=sleeps
    )
    await client.create(MESSAGES)
    bounds = [(0.5, 1), (1, 2), (2, 4), (2, 4), (2, 4)]
    assert len(sleeps) == 5 and all(lo <= s <= hi for s, (lo, hi) in zip(sleeps, bounds, strict=True))
    assert client.stats().backoff_s == pytest.approx(sum(sleeps))


async def test_retry_after_is_capped() -> None:
    sleeps = Sleeps()
    inner = Flaky([status_error(429, {"retry-after": "3600"})])
    await ManagedClient(inner, ClientOptions(retry_after_max_s=60), sleep=sleeps).create(MESSAGES)
    assert sleeps == [60]


async def test_non_retryable_errors_propagate_at_once() -> None:
    sleeps = Sleeps()
    client = ManagedClient(Flaky([ValueError("schema bug")]), sleep=sleeps)
    with pytest.raises(ValueError, match="schema bug") as info:
        await client.create(MESSAGES)
    assert sleeps == [] and "not retryable" in info.value.__notes__[0]
    assert client.stats().errors == {"ValueError": 1}


async def test_timeout_per_attempt() -> None:
    inner = Flaky(delay=0.2)
    client = ManagedClient(inner, ClientOptions(timeout_s=0.05, max_retries=1), sleep=Sleeps())
    with pytest.raises(TimeoutError):
        await client.create(MESSAGES)
    stats = client.stats()
    assert (stats.attempts, stats.failed, stats.errors) == (2, 1, {"TimeoutError": 2})


async def test_concurrency_limit_and_slots_free_during_backoff() -> None:
    inner = Flaky([status_error(500)] * 3, delay=0.01)
    client = ManagedClient(inner, ClientOptions(max_concurrency=3), sleep=Sleeps())
    await asyncio.gather(*(client.create(MESSAGES) for _ in range(12)))
    assert inner.peak == 3 and client.stats().max_in_flight == 3
    stats = client.stats()
    assert (stats.calls, stats.ok, stats.retries, stats.in_flight) == (12, 12, 3, 0)
    assert (stats.prompt_tokens, stats.completion_tokens) == (36, 12)


async def test_cancellation_is_counted_and_frees_the_slot() -> None:
    client = ManagedClient(Flaky(delay=10), ClientOptions(max_concurrency=1))
    task = asyncio.create_task(client.create(MESSAGES))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = client.stats()
    assert (stats.cancelled, stats.in_flight) == (1, 0)
    client.inner.delay = 0  # type: ignore[attr-defined]
    assert (await asyncio.wait_for(client.create(MESSAGES), 1)).content == "ok"


def test_one_client_across_event_loops() -> None:
    client = ManagedClient(Flaky(delay=0.001), ClientOptions(max_concurrency=1))

    async def burst() -> None:
        await asyncio.gather(*(client.create(MESSAGES) for _ in range(3)))

    asyncio.run(burst())
    asyncio.run(burst())
    assert client.stats().ok == 6


async def test_sampling_defaults_merge() -> None:
    inner = Flaky()
    client = ManagedClient(inner, ClientOptions(sampling={"temperature": 0.1, "top_p": 0.9}))
    await client.create(MESSAGES, extra_create_args={"temperature": 1.0, "stop": ["\n"]})
    assert inner.seen_args[-1] == {"temperature": 1.0, "top_p": 0.9, "stop": ["\n"]}


def test_options_validation_and_immutability() -> None:
    with pytest.raises(ValidationError, match="unknown sampling keys"):
        ClientOptions(sampling={"temprature": 0.5})
    with pytest.raises(ValidationError):
        ClientOptions(max_concurrency=0)
    with pytest.raises(ValidationError):
        ClientOptions(api_key="sk-nope")  # type: ignore[call-arg]  # keys never live in options
    options = ClientOptions()
    with pytest.raises(ValidationError):
        options.max_retries = 1  # type: ignore[misc]
    assert (options.max_concurrency, options.timeout_s, options.max_retries) == (16, 120.0, 5)


async def test_supports_logprobs_only_when_the_backend_does() -> None:
    plain = ManagedClient(Flaky())
    assert not isinstance(plain, SupportsLogprobs) and not hasattr(plain, "continuation_nll")
    scorer = ManagedClient(Scorer([TimeoutError()]), sleep=Sleeps())
    assert isinstance(scorer, SupportsLogprobs) and isinstance(scorer, ManagedClient)
    scores = await scorer.continuation_nll([ScoreRequest(MESSAGES, "abc"), ScoreRequest(MESSAGES, "a")])
    assert scores == [3.0, 1.0]
    assert scorer.stats().retries == 1


async def test_delegation() -> None:
    inner = ReplayChatCompletionClient(["one two"])
    client = ManagedClient(inner)
    assert client.model_info == inner.model_info
    assert client.count_tokens(MESSAGES) == 2
    await client.create(MESSAGES)
    assert client.total_usage().completion_tokens == 2 and client.actual_usage().prompt_tokens == 2
    assert client.remaining_tokens(MESSAGES) == inner.remaining_tokens(MESSAGES)
    await client.close()


# -- replay backend ------------------------------------------------------------------------------------
class Verdict(BaseModel):
    winner: int


async def test_replay_file(tmp_path: Path) -> None:
    path = tmp_path / "replies.jsonl"
    path.write_text(
        '{"content": "first"}\n\n# a comment\n"second"\n{"content": {"winner": 2}}\nplain words\n'
        '{"content": "cut", "finish_reason": "length"}\n'
    )
    client = make_client(f"replay:{path}")
    assert client.model_info["structured_output"] and str(client.spec) == f"replay:{path}"
    got = [await client.create(MESSAGES) for _ in range(3)]
    assert [g.content for g in got[:2]] == ["first", "second"]
    assert Verdict.model_validate_json(got[2].content) == Verdict(winner=2)  # type: ignore[arg-type]
    assert (await client.create(MESSAGES, json_output=Verdict)).content == "plain words"
    assert (await client.create(MESSAGES)).finish_reason == "length"
    with pytest.raises(ReplayExhaustedError, match="all 5 scripted replies are used"):
        await client.create(MESSAGES)
    assert client.stats().retries == 0


def test_replay_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelSpecError, match="does not exist"):
        make_client(f"replay:{tmp_path / 'missing.jsonl'}")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('"ok"\n{"answer": 1}\n')
    with pytest.raises(ModelSpecError, match=r"bad.jsonl:2: .*wrap it"):
        make_client(f"replay:{bad}")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ModelSpecError, match="no replies"):
        make_client(f"replay:{empty}")
