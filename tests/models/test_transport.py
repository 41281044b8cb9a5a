"""The aiohttp transport under ``openai:`` backends: one pool per event loop, errors keep their kind."""

from __future__ import annotations

import asyncio
import json

from autogen_core.models import UserMessage

from synth.models import ClientOptions, make_client
from synth.models.transport import PerLoopTransport
from synth.testing.openai_server import OpenAIServer
from tests.chat_app import serving_chat

MESSAGES = [UserMessage(content="hello", source="user")]


def test_one_client_serves_several_event_loops_each_with_its_own_pool(openai_server: OpenAIServer) -> None:
    client = make_client(f"openai:m@{openai_server.base_url}", ClientOptions(max_retries=0))
    http = client.inner._client._client  # type: ignore[attr-defined]  # JsonBodyClient -> AsyncOpenAI -> http
    transport = http._transport
    assert isinstance(transport, PerLoopTransport)  # the aiohttp extra is a dependency

    async def one_call() -> int:
        await client.create(MESSAGES)
        return len(transport._by_loop)

    # asyncio.run closes its loop: a pool bound to the first loop must not be reused by the second.
    assert asyncio.run(one_call()) == 1
    assert asyncio.run(one_call()) == 1  # the first loop is gone, and its pool with it
    assert openai_server.stats()["completions"] == 2

    async def close() -> None:
        await client.create(MESSAGES)
        await client.close()
        assert len(transport._by_loop) == 0

    asyncio.run(close())


async def test_a_reset_connection_is_a_connection_error_not_a_timeout(openai_server: OpenAIServer) -> None:
    client = make_client(f"openai:m@{openai_server.base_url}", ClientOptions(backoff_base_s=0.0))
    openai_server.set_faults(fail_first=1, fail_first_with="reset")
    await client.create(MESSAGES)
    assert client.stats().errors == {"APIConnectionError": 1}
    await client.close()


async def test_the_body_posted_without_the_sdk_transform_is_the_sdk_body(openai_server: OpenAIServer) -> None:
    """``JsonBodyClient`` posts what ``chat.completions.create`` would: same fields, options applied."""
    from pydantic import BaseModel

    class Out(BaseModel):
        answer: str

    client = make_client(f"openai:m@{openai_server.base_url}", ClientOptions(max_retries=0))
    sdk = client.inner._client._sdk  # type: ignore[attr-defined]
    args = {"temperature": 0.5, "seed": 3, "extra_body": {"top_k": 4}, "timeout": 30.0}
    openai_server.script('{"answer": "a"}')
    await client.create(MESSAGES, json_output=Out, extra_create_args=args)
    ours = openai_server.requests[-1]
    await sdk.chat.completions.create(
        model="m",
        messages=[{"role": "user", "name": "user", "content": "hello"}],
        response_format=ours["response_format"],
        stream=False,
        temperature=0.5,
        seed=3,
        extra_body={"top_k": 4},
    )
    theirs = openai_server.requests[-1]
    assert ours == theirs and ours["top_k"] == 4 and ours["response_format"]["type"] == "json_schema"
    await client.close()


def test_the_clients_of_a_process_share_one_tls_context() -> None:
    """Loading the CA bundle costs ~17 ms per context: built once, then reused by every later client (a
    ``--workers`` process inherits it from the parent that built its first client before the fork)."""
    from synth.models.transport import http_client

    first, second = http_client(), http_client()
    assert first is not None and second is not None and first is not second
    context = first._transport._template.ssl_context
    assert context is not None and second._transport._template.ssl_context is context


def test_a_reply_is_parsed_in_one_pass_as_the_sdk_would_build_it() -> None:
    from openai._models import construct_type
    from openai.types.chat import ChatCompletion

    from synth.models.transport import parse_completion

    reply = {
        "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }  # fmt: skip
    body = json.dumps(reply).encode()
    assert parse_completion(body) == construct_type(type_=ChatCompletion, value=json.loads(body))


async def test_a_reply_that_does_not_conform_still_comes_back_whole() -> None:
    """A server that leaves out ``created`` and ``object``, names its own finish reason and adds a field."""
    from aiohttp import web

    reply = {
        "id": "c1", "model": "m", "served_by": "a proxy",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "as is"}, "finish_reason": "eos"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }  # fmt: skip

    async def completions(request: web.Request) -> web.Response:
        return web.json_response(reply)

    async with serving_chat(completions) as base_url:
        client = make_client(f"openai:m@{base_url}", ClientOptions(max_retries=0))
        try:
            result = await client.create(MESSAGES)
        finally:
            await client.close()
    assert result.content == "as is"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (3, 2)
