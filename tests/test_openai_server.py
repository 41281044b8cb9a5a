"""The loopback OpenAI double, exercised through the real ``openai`` SDK over HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import openai
import pytest

from synth.testing.openai_server import Faults, Latency, OpenAIServer
from synth.testing.process import ServerProcess
from synth.testing.replies import QueueResponder, Reply, example_from_schema

USER = [{"role": "user", "content": "what is the capital of France"}]


def client(server: OpenAIServer, timeout: float = 10.0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0, timeout=timeout)


async def ask(server: OpenAIServer, content: str = "hello there", **kwargs: object) -> Any:
    messages = [{"role": "user", "content": content}]
    async with client(server) as api:
        return await api.chat.completions.create(model="m", messages=messages, **kwargs)  # type: ignore[arg-type]


async def test_default_echo_usage_and_models(openai_server: OpenAIServer) -> None:
    assert openai_server.base_url.endswith("/v1")
    reply = await ask(openai_server, "hello there")
    assert reply.choices[0].message.content == "echo: hello there"  # type: ignore[attr-defined]
    assert reply.usage.prompt_tokens == 2 and reply.usage.completion_tokens == 3  # type: ignore[attr-defined]
    async with client(openai_server) as api:
        models = await api.models.list()
    assert [m.id for m in models.data] == ["mock-model"]
    stats = openai_server.stats()
    assert stats["completions"] == 1 and stats["by_outcome"] == {"ok": 1}
    assert openai_server.requests[0]["messages"][0]["content"] == "hello there"


async def test_script_by_substring_system_and_queue(openai_server: OpenAIServer) -> None:
    openai_server.script({"capital": "Paris", "weather": {"content": {"sunny": True}}})
    assert (await ask(openai_server, "the capital?")).choices[0].message.content == "Paris"  # type: ignore[attr-defined]
    assert json.loads((await ask(openai_server, "weather")).choices[0].message.content) == {"sunny": True}  # type: ignore[attr-defined]
    with pytest.raises(openai.UnprocessableEntityError, match="no scripted reply"):
        await ask(openai_server, "unmatched")

    openai_server.script({"judge": "verdict"}, where="system", default="fallback")
    messages = [{"role": "system", "content": "you are a judge"}, {"role": "user", "content": "x"}]
    async with client(openai_server) as api:
        out = await api.chat.completions.create(model="m", messages=messages)  # type: ignore[arg-type]
    assert out.choices[0].message.content == "verdict"
    assert (await ask(openai_server, "x")).choices[0].message.content == "fallback"  # type: ignore[attr-defined]

    queue = QueueResponder(["one", Reply(content="two", finish_reason="length")])
    openai_server.script(queue)
    first, second = await ask(openai_server), await ask(openai_server)
    assert first.choices[0].message.content == "one"  # type: ignore[attr-defined]
    assert second.choices[0].finish_reason == "length"  # type: ignore[attr-defined]
    with pytest.raises(openai.UnprocessableEntityError, match="exhausted"):
        await ask(openai_server)
    assert openai_server.stats()["by_outcome"]["responder_error"] == 2


async def test_max_tokens_truncates_with_length(openai_server: OpenAIServer) -> None:
    openai_server.script("one two three four five")
    out = await ask(openai_server, max_tokens=2)
    assert out.choices[0].message.content == "one two" and out.choices[0].finish_reason == "length"  # type: ignore[attr-defined]


def test_example_from_schema_handles_refs_enums_and_arrays() -> None:
    schema = {
        "type": "object",
        "properties": {
            "kind": {"enum": ["a", "b"]},
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 1},
            "maybe": {"anyOf": [{"type": "integer", "minimum": 3}, {"type": "null"}]},
        },
        "$defs": {"Item": {"type": "object", "properties": {"score": {"type": "number"}}}},
    }
    assert example_from_schema(schema) == {"kind": "a", "items": [{"score": 1.0}], "maybe": 4}


async def test_fail_first_and_http_faults(openai_server: OpenAIServer) -> None:
    openai_server.set_faults(fail_first=1, fail_first_with="500")
    with pytest.raises(openai.InternalServerError):
        await ask(openai_server)
    await ask(openai_server)  # the second call is fine

    openai_server.set_faults(fail_first=1, fail_first_with="429", retry_after_s=3)
    with pytest.raises(openai.RateLimitError) as info:
        await ask(openai_server)
    assert info.value.response.headers["retry-after"] == "3"

    openai_server.set_faults(fail_first=1, fail_first_with="reset")
    with pytest.raises(openai.APIConnectionError):
        await ask(openai_server)

    openai_server.set_faults(fail_first=1, fail_first_with="malformed")
    out = await ask(openai_server)
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.choices[0].message.content)  # type: ignore[attr-defined]

    outcomes = openai_server.stats()["by_outcome"]
    assert outcomes == {"500": 1, "ok": 1, "429": 1, "reset": 1, "malformed": 1}


async def test_malformed_fault_spares_scripted_error_replies() -> None:
    """A malformed fault corrupts a 200's content; a row scripted to fail (503) keeps failing."""

    def responder(request: dict[str, Any]) -> Reply | str:
        doomed = "DOOMED" in request["messages"][0]["content"]
        return Reply(status=503, error="overloaded") if doomed else "fine"

    with OpenAIServer(responder, faults=Faults(malformed=1.0, seed=1)) as server:
        with pytest.raises(openai.InternalServerError):
            await ask(server, "DOOMED row")
        out = await ask(server, "a good row")
        assert out.choices[0].message.content == server.faults.malformed_content  # type: ignore[attr-defined]
        assert server.stats()["by_outcome"] == {"503": 1, "malformed": 1}


async def test_hang_ends_when_the_client_times_out(openai_server: OpenAIServer) -> None:
    openai_server.set_faults(fail_first=1, fail_first_with="hang")
    start = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        await client(openai_server, timeout=0.3).chat.completions.create(model="m", messages=USER)  # type: ignore[arg-type]
    assert time.perf_counter() - start < 2
    assert openai_server.stats()["by_outcome"]["hang"] == 1
    for _ in range(50):  # the server notices the disconnect and frees the slot
        if openai_server.stats()["in_flight"] == 0:
            break
        await asyncio.sleep(0.02)
    assert openai_server.stats()["in_flight"] == 0


def test_seeded_fault_rates_are_reproducible() -> None:
    import httpx

    def statuses() -> list[int]:
        with (
            OpenAIServer(faults=Faults(error_500=0.3, rate_limit_429=0.2, seed=7)) as server,
            httpx.Client() as http,
        ):
            url = f"{server.base_url}/chat/completions"
            return [http.post(url, json={"model": "m", "messages": USER}).status_code for _ in range(40)]

    first = statuses()
    assert first == statuses()
    assert {200, 500, 429} <= set(first)


async def test_latency_jitter_stragglers_and_override(openai_server: OpenAIServer) -> None:
    openai_server.set_latency(Latency(mean_ms=100))
    start = time.perf_counter()
    await ask(openai_server)
    assert 0.09 <= time.perf_counter() - start < 1.0

    openai_server.set_latency(Latency(mean_ms=20, straggler_rate=1.0, straggler_factor=5))
    start = time.perf_counter()
    await ask(openai_server)
    assert time.perf_counter() - start >= 0.095

    openai_server.set_latency(Latency(mean_ms=2000))  # overridden per request below
    openai_server.script(lambda request: {"content": "fast", "latency_ms": 0})
    start = time.perf_counter()
    await ask(openai_server)
    openai_server.script("default")
    await ask(openai_server, extra_headers={"x-mock-latency-ms": "0"})
    assert time.perf_counter() - start < 1.0


async def test_max_in_flight_and_bounded_log() -> None:
    with OpenAIServer(latency=0.2, log_limit=5) as server:
        await asyncio.gather(*(ask(server, f"row {i}") for i in range(12)))
        stats = server.stats()
        assert stats["max_in_flight"] == 12 and stats["in_flight"] == 0
        assert len(server.requests) == 5
        server.reset_counters()
        assert server.stats()["completions"] == 0 and server.requests == []


async def test_streaming_with_usage(openai_server: OpenAIServer) -> None:
    text, usage = "", None
    async with client(openai_server) as api:
        stream = await api.chat.completions.create(
            model="m",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},  # type: ignore[arg-type]
        )
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage:
                usage = chunk.usage
    assert text == "echo: what is the capital of France"
    assert usage is not None and usage.completion_tokens == 7


async def test_logprobs_chat_completions_and_vllm_prompt_logprobs(openai_server: OpenAIServer) -> None:
    openai_server.script(
        {
            "score": {
                "content": "yes no",
                "logprobs": [["yes", -0.5], ["no", -2.0]],
                "prompt_logprobs": [["score", -1.0], ["this", -3.0]],
            }
        }
    )
    out = await ask(
        openai_server, "score this", logprobs=True, top_logprobs=1, extra_body={"prompt_logprobs": 0}
    )
    lps = out.choices[0].logprobs.content  # type: ignore[attr-defined]
    assert [(t.token, t.logprob) for t in lps] == [("yes", -0.5), ("no", -2.0)]
    prompt_lps = out.model_extra["prompt_logprobs"]  # type: ignore[attr-defined]
    assert prompt_lps[0] is None and next(iter(prompt_lps[1].values()))["logprob"] == -3.0

    openai_server.script("")
    async with client(openai_server) as api:
        done = await api.completions.create(
            model="m", prompt="the cat sat", echo=True, logprobs=0, max_tokens=0
        )
    assert done.choices[0].logprobs.tokens == ["the", "cat", "sat"]  # type: ignore[union-attr]
    token_lps = done.choices[0].logprobs.token_logprobs  # type: ignore[union-attr]
    assert token_lps[0] is None and all(lp < 0 for lp in token_lps[1:])


def test_sync_use_and_restart() -> None:
    import httpx

    with OpenAIServer() as server:
        body = {"model": "m", "messages": USER}
        assert httpx.post(f"{server.base_url}/chat/completions", json=body).status_code == 200
        assert httpx.get(f"{server.url}/nope").status_code == 404
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=1)


def test_separate_process_with_control_endpoints() -> None:
    import httpx

    with ServerProcess(latency_ms=10, fail_first=1) as proc:
        url = f"{proc.base_url}/chat/completions"
        assert httpx.post(url, json={"model": "m", "messages": USER}).status_code == 500
        assert httpx.post(url, json={"model": "m", "messages": USER}).status_code == 200
        assert proc.stats()["by_outcome"] == {"500": 1, "ok": 1}
        proc.configure(faults={"fail_first": 1, "fail_first_with": "429", "retry_after_s": 2})
        response = httpx.post(url, json={"model": "m", "messages": USER})
        assert response.status_code == 429 and response.headers["retry-after"] == "2"
        proc.reset_counters()
        assert proc.stats()["completions"] == 0


async def test_throughput_sanity() -> None:
    """Far from the bench numbers (see report): only catches a server that serialises requests."""
    with OpenAIServer(latency=0.02) as server:
        async with client(server) as api:
            sem = asyncio.Semaphore(32)

            async def one(i: int) -> None:
                async with sem:
                    await api.chat.completions.create(
                        model="m", messages=[{"role": "user", "content": f"r{i}"}]
                    )

            await asyncio.gather(*(one(i) for i in range(32)))  # warm the connection pool
            start = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(300)))
            rate = 300 / (time.perf_counter() - start)
        assert server.stats()["max_in_flight"] == 32
        assert rate > 150, f"{rate:.0f} req/s"


async def test_stock_autogen_client_structured_output_via_beta_parse(openai_server: OpenAIServer) -> None:
    """autogen's own client sends json_output models via ``beta.chat.completions.parse``: that works too."""
    import warnings

    from autogen_core.models import UserMessage
    from autogen_ext.models.openai import OpenAIChatCompletionClient
    from pydantic import BaseModel

    class Verdict(BaseModel):
        winner: int
        reason: str

    info = {
        "vision": False,
        "function_calling": True,
        "json_output": True,
        "family": "unknown",
        "structured_output": True,
    }
    client = OpenAIChatCompletionClient(
        model="m", base_url=openai_server.base_url, api_key="x", model_info=info
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic's serializer warning on `parsed` (known, harmless)
        result = await client.create(
            [UserMessage(content="which is better?", source="u")], json_output=Verdict
        )
    assert Verdict.model_validate_json(result.content) == Verdict(winner=1, reason="x")  # type: ignore[arg-type]
    assert openai_server.requests[-1]["response_format"]["json_schema"]["name"] == "Verdict"
    await client.close()
