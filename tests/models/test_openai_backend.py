"""``openai:MODEL@URL`` end to end: make_client -> ManagedClient -> autogen client -> openai SDK -> HTTP.

Nothing is patched: the loopback server (``openai_server`` fixture) plays the paid API. Only the backoff
sleep is replaced, so retry tests are fast and can assert the waits that were chosen.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import openai
import pytest
from autogen_core.models import CreateResult, SystemMessage, UserMessage
from pydantic import BaseModel, ConfigDict

from synth.errors import ModelSpecError
from synth.models import ClientOptions, ManagedClient, make_client
from synth.testing.openai_server import OpenAIServer

MESSAGES = [
    SystemMessage(content="You are terse."),
    UserMessage(content="What is the capital of France?", source="user"),
]


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer: str
    confidence: int


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


_OPEN: list[ManagedClient] = []


def managed(server: OpenAIServer, sleeps: Sleeps | None = None, **options: object) -> ManagedClient:
    opts = ClientOptions(**{"timeout_s": 5.0, "max_retries": 3, **options})  # type: ignore[arg-type]
    client = make_client(
        f"openai:test-model@{server.base_url}", opts, sleep=sleeps if sleeps is not None else Sleeps()
    )
    _OPEN.append(client)
    return client


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Close HTTP clients inside the test's event loop (else their sockets are reaped after it closed)."""
    yield
    while _OPEN:
        await _OPEN.pop().close()


async def test_plain_reply_and_usage(openai_server: OpenAIServer) -> None:
    openai_server.script({"capital of France": "Paris"})
    client = managed(openai_server)
    result = await client.create(MESSAGES)
    assert result.content == "Paris" and result.finish_reason == "stop"
    assert result.usage.prompt_tokens == 9 and result.usage.completion_tokens == 1
    stats = client.stats()
    assert (stats.calls, stats.ok, stats.attempts, stats.retries) == (1, 1, 1, 0)
    assert openai_server.requests[0]["model"] == "test-model"


async def test_structured_output_sends_schema_and_returns_raw_json(openai_server: OpenAIServer) -> None:
    openai_server.script({"capital": {"content": {"answer": "Paris", "confidence": 9}}})
    client = managed(openai_server)
    result = await client.create(MESSAGES, json_output=Answer)
    assert Answer.model_validate_json(result.content) == Answer(answer="Paris", confidence=9)  # type: ignore[arg-type]
    fmt = openai_server.requests[-1]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Answer"
    assert set(fmt["json_schema"]["schema"]["properties"]) == {"answer", "confidence"}


async def test_structured_output_through_an_assistant_agent(openai_server: OpenAIServer) -> None:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.messages import StructuredMessage

    client = managed(openai_server)  # the default responder answers any schema with a valid example
    agent = AssistantAgent("solver", model_client=client, output_content_type=Answer)
    result = await agent.run(task="What is the capital of France?")
    last = result.messages[-1]
    assert isinstance(last, StructuredMessage) and isinstance(last.content, Answer)


async def test_malformed_json_and_length_come_back_as_text(openai_server: OpenAIServer) -> None:
    """Validation and repair are the role layer's job: the client must not raise or drop the raw text."""
    client = managed(openai_server)
    openai_server.set_faults(fail_first=1, fail_first_with="malformed")
    result = await client.create(MESSAGES, json_output=Answer)
    assert result.content == openai_server.faults.malformed_content
    openai_server.script('{"answer": "a very long answer that goes on", "confidence": 3}')
    cut = await client.create(MESSAGES, json_output=Answer, extra_create_args={"max_tokens": 3})
    assert cut.finish_reason == "length" and isinstance(cut.content, str)
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.content)


async def test_500_then_success_is_retried_and_counted(openai_server: OpenAIServer) -> None:
    sleeps = Sleeps()
    client = managed(openai_server, sleeps, backoff_base_s=1.0)
    openai_server.set_faults(fail_first=2, fail_first_with="500")
    result = await client.create(MESSAGES)
    assert result.content.startswith("echo:")  # type: ignore[union-attr]
    stats = client.stats()
    assert (stats.calls, stats.ok, stats.attempts, stats.retries) == (1, 1, 3, 2)
    assert stats.errors == {"InternalServerError": 2}
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0  # jittered exponential backoff
    assert openai_server.stats()["by_outcome"] == {"500": 2, "ok": 1}


async def test_429_honours_retry_after(openai_server: OpenAIServer) -> None:
    sleeps = Sleeps()
    client = managed(openai_server, sleeps)
    openai_server.set_faults(fail_first=1, fail_first_with="429", retry_after_s=7)
    await client.create(MESSAGES)
    assert sleeps == [7.0]
    assert client.stats().errors == {"RateLimitError": 1}


async def test_hang_times_out_and_is_retried(openai_server: OpenAIServer) -> None:
    client = managed(openai_server, timeout_s=0.5)
    openai_server.set_faults(fail_first=1, fail_first_with="hang")
    result = await client.create(MESSAGES)
    assert result.content.startswith("echo:")  # type: ignore[union-attr]
    assert client.stats().errors == {"TimeoutError": 1}
    assert openai_server.stats()["by_outcome"] == {"hang": 1, "ok": 1}


async def test_connection_reset_is_retried(openai_server: OpenAIServer) -> None:
    client = managed(openai_server)
    openai_server.set_faults(fail_first=1, fail_first_with="reset")
    await client.create(MESSAGES)
    assert client.stats().errors == {"APIConnectionError": 1}


async def test_400_is_not_retried(openai_server: OpenAIServer) -> None:
    sleeps = Sleeps()
    client = managed(openai_server, sleeps)
    openai_server.script({"status": 400, "error": "context too long"})
    with pytest.raises(openai.BadRequestError, match="context too long"):
        await client.create(MESSAGES)
    assert sleeps == [] and openai_server.stats()["completions"] == 1
    stats = client.stats()
    assert (stats.failed, stats.retries) == (1, 0)


async def test_retries_exhausted_raise_the_last_error_with_history(openai_server: OpenAIServer) -> None:
    client = managed(openai_server, max_retries=2)
    openai_server.set_faults(reset=1.0)
    with pytest.raises(openai.APIConnectionError) as info:
        await client.create(MESSAGES)
    assert info.value.__cause__ is not None  # the transport error underneath is kept
    note = "\n".join(info.value.__notes__)
    assert "retries exhausted after 3 attempt(s)" in note and note.count("APIConnectionError") == 3
    assert openai_server.stats()["by_outcome"] == {"reset": 3}
    assert client.stats().failed == 1


async def test_concurrency_limit_is_never_exceeded(openai_server: OpenAIServer) -> None:
    openai_server.set_latency(0.1)
    client = managed(openai_server, max_concurrency=4)
    results = await asyncio.gather(
        *(client.create([UserMessage(content=f"row {i}", source="u")]) for i in range(12))
    )
    assert len(results) == 12
    assert openai_server.stats()["max_in_flight"] == 4
    assert client.stats().max_in_flight == 4


async def test_usage_sums_across_rows_sharing_one_client(openai_server: OpenAIServer) -> None:
    client = managed(openai_server, max_concurrency=8)
    results = await asyncio.gather(
        *(client.create([UserMessage(content="word " * (i + 1), source="u")]) for i in range(10))
    )
    stats, server = client.stats(), openai_server.stats()
    assert stats.calls == stats.ok == 10
    assert stats.prompt_tokens == sum(r.usage.prompt_tokens for r in results) == server["prompt_tokens"] == 55
    assert stats.completion_tokens == server["completion_tokens"]
    assert stats.latency_s > 0


async def test_sampling_defaults_are_merged_and_per_call_values_win(openai_server: OpenAIServer) -> None:
    client = managed(openai_server, sampling={"temperature": 0.2, "max_tokens": 50, "seed": 1})
    await client.create(MESSAGES, extra_create_args={"temperature": 0.9})
    sent = openai_server.requests[-1]
    assert (sent["temperature"], sent["max_tokens"], sent["seed"]) == (0.9, 50, 1)


async def test_streaming_through_managed_client(openai_server: OpenAIServer) -> None:
    openai_server.script("streamed words here")
    openai_server.set_faults(fail_first=1, fail_first_with="500")  # fails before the first chunk: retried
    client = managed(openai_server)
    items = [item async for item in client.create_stream(MESSAGES)]
    assert "".join(i for i in items if isinstance(i, str)) == "streamed words here"
    assert isinstance(items[-1], CreateResult) and items[-1].content == "streamed words here"
    stats = client.stats()
    assert (stats.ok, stats.retries, stats.in_flight) == (1, 1, 0)


def test_api_key_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-very-secret-123"
    monkeypatch.setenv("MY_PROVIDER_KEY", secret)
    options = ClientOptions(api_key_env="MY_PROVIDER_KEY")
    client = make_client("openai:gpt-4o-mini", options)
    assert client.inner._client.api_key == secret  # type: ignore[attr-defined]
    for text in (repr(client), str(client), repr(client.inner), repr(options), str(options), client.spec):
        assert secret not in text
    assert secret not in options.model_dump_json()


def test_api_key_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelSpecError, match="OPENAI_API_KEY"):
        make_client("openai:gpt-4o-mini")
    with pytest.raises(ModelSpecError, match="MISSING_KEY_VAR"):
        make_client("openai:m@http://127.0.0.1:9/v1", ClientOptions(api_key_env="MISSING_KEY_VAR"))
    with pytest.raises(ModelSpecError, match="OPENAI_API_KEY"):
        make_client("openai:m@https://api.example.com/v1")
    for url in ("http://localhost:8000/v1", "http://10.1.2.3:8000/v1", "http://vllm:8000/v1"):
        assert make_client(f"openai:m@{url}").inner._client.api_key == "EMPTY"  # type: ignore[attr-defined]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    client = make_client("openai:gpt-4o-mini")
    assert client.inner._client.max_retries == 0  # type: ignore[attr-defined]  # retries live in ManagedClient


def test_model_info_defaults_and_overrides() -> None:
    info = make_client("openai:Qwen/Qwen2.5-7B@http://127.0.0.1:9/v1").model_info
    assert info["structured_output"] and info["json_output"] and info["function_calling"]
    assert not info["vision"] and info["family"] == "unknown"
    custom = ClientOptions(model_info={"structured_output": False, "family": "llama"})
    info = make_client("openai:llama@http://127.0.0.1:9/v1", custom).model_info
    assert not info["structured_output"] and info["family"] == "llama"
    with pytest.raises(ModelSpecError, match="Unknown model_info keys"):
        make_client("openai:m@http://127.0.0.1:9/v1", ClientOptions(model_info={"visoin": True}))


async def test_no_schema_support_falls_back_to_json_mode(openai_server: OpenAIServer) -> None:
    client = managed(openai_server, model_info={"structured_output": False})
    await client.create(MESSAGES, json_output=Answer)
    assert openai_server.requests[-1]["response_format"] == {"type": "json_object"}


async def test_a_slot_is_held_only_while_the_request_is_on_the_wire(openai_server: OpenAIServer) -> None:
    """One slot, four calls: all four build their requests at once; only the HTTP exchanges take turns."""
    openai_server.set_latency(0.05)
    client = managed(openai_server, max_concurrency=1)
    backend = client.inner.inner  # type: ignore[attr-defined]
    send = backend.create
    preparing = peak = 0

    async def slow_to_prepare(messages: list[object], **kwargs: object) -> CreateResult:
        nonlocal preparing, peak
        preparing += 1
        peak = max(peak, preparing)
        await asyncio.sleep(0.05)  # request building on a busy loop: no slot is needed for it
        preparing -= 1
        return await send(messages, **kwargs)  # type: ignore[no-any-return]

    backend.create = slow_to_prepare
    await asyncio.gather(*(client.create([UserMessage(content=f"row {i}", source="u")]) for i in range(4)))
    assert peak == 4
    assert openai_server.stats()["max_in_flight"] == 1
    stats = client.stats()
    assert (stats.max_in_flight, stats.in_flight, stats.ok) == (1, 0, 4)


async def test_waiting_for_a_slot_does_not_count_against_the_timeout(openai_server: OpenAIServer) -> None:
    openai_server.set_latency(0.3)
    client = managed(openai_server, max_concurrency=1, timeout_s=0.5, max_retries=0)
    # The third call waits ~0.6 s for its slot, longer than the timeout, and then has its whole 0.5 s.
    await asyncio.gather(*(client.create([UserMessage(content=f"row {i}", source="u")]) for i in range(3)))
    stats = client.stats()
    assert (stats.ok, stats.failed, stats.errors) == (3, 0, {})
    assert 0.25 < stats.latency_s / 3 < 0.5  # each call's latency is its exchange, not its wait


async def test_a_failed_or_cancelled_exchange_gives_its_slot_back(openai_server: OpenAIServer) -> None:
    client = managed(openai_server, max_concurrency=1, max_retries=0)
    openai_server.set_faults(reset=1.0)
    for _ in range(3):  # with a leaked slot the second call would wait forever
        with pytest.raises(openai.APIConnectionError):
            await asyncio.wait_for(client.create(MESSAGES), 5)
    openai_server.set_faults(reset=0.0)
    openai_server.set_latency(0.3)
    first = asyncio.create_task(client.create([UserMessage(content="first", source="u")]))
    waiting = asyncio.create_task(client.create([UserMessage(content="waiting", source="u")]))
    await asyncio.sleep(0.1)  # `waiting` is blocked at the request hook, `first` is on the wire
    assert client.free_slots() == (0, 1, 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await first
    await asyncio.wait_for(client.create(MESSAGES), 5)
    assert client.free_slots() == (1, 0, 0)
    assert client.stats().in_flight == 0


async def test_a_call_building_its_request_counts_as_waiting_for_a_slot(openai_server: OpenAIServer) -> None:
    """``--workers`` claims rows by free slots against waiting calls: one on its way to the wire waits."""
    client = managed(openai_server, max_concurrency=4)
    backend = client.inner.inner  # type: ignore[attr-defined]
    send = backend.create
    building, go_on = asyncio.Event(), asyncio.Event()

    async def slow_to_build(messages: list[object], **kwargs: object) -> CreateResult:
        building.set()
        await go_on.wait()
        return await send(messages, **kwargs)  # type: ignore[no-any-return]

    backend.create = slow_to_build
    call = asyncio.create_task(client.create(MESSAGES))
    await building.wait()
    assert client.free_slots() == (4, 0, 1)
    go_on.set()
    await call
    assert client.free_slots() == (4, 0, 0)
