"""Chat bodies posted straight through the SDK client's aiohttp session (synth/models/direct_post.py):
the same request on the wire as the SDK's path, the SDK's errors, the reply guard and the call slot."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from aiohttp import web
from autogen_core.models import UserMessage

from synth.models import ClientOptions, make_client
from synth.models.reply_guard import GarbageReplyError, ReplyTooLargeError
from synth.testing.openai_server import OpenAIServer
from tests.chat_app import serving_chat

MESSAGES = [UserMessage(content="hello", source="user")]
REPLY = {
    "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}  # fmt: skip


def completions(client: Any) -> Any:
    return client.inner._client.chat.completions  # ManagedClient -> autogen client -> JsonBodyClient


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A server that answers every chat request and records its method, path, headers and body."""
    seen: list[dict[str, Any]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "headers": dict(request.headers), "body": await request.read()})
        return web.json_response(REPLY)

    async with serving_chat(answer) as base_url:
        yield base_url, seen


async def test_the_direct_post_sends_what_the_sdk_sends(recorder: tuple[str, list[dict[str, Any]]]) -> None:
    base_url, seen = recorder
    backend = {"default_headers": {"X-Team": "synth"}, "organization": "org-1"}
    client = make_client(f"openai:m@{base_url}", ClientOptions(max_retries=0, backend_options=backend))
    chat = completions(client)
    assert chat.direct is not None and chat.direct.url == f"{base_url}/chat/completions"
    await client.create(MESSAGES, extra_create_args={"temperature": 0.5})
    direct = seen[-1]
    chat.direct = None  # the SDK's own path, same client
    await client.create(MESSAGES, extra_create_args={"temperature": 0.5})
    sdk = seen[-1]
    await client.close()
    assert direct["path"] == sdk["path"] == "/v1/chat/completions"
    assert direct["body"] == sdk["body"]  # byte for byte: the same JSON encoding
    volatile = {
        "x-stainless-retry-count",
        "x-stainless-read-timeout",
        "content-length",
        "accept-encoding",
        "connection",
    }
    lower = [
        {k.lower(): v for k, v in call["headers"].items() if k.lower() not in volatile}
        for call in (direct, sdk)
    ]
    assert lower[0] == lower[1]
    assert lower[0]["authorization"] == "Bearer EMPTY" and lower[0]["x-team"] == "synth"
    assert lower[0]["openai-organization"] == "org-1" and lower[0]["content-type"] == "application/json"


async def test_clients_the_direct_post_would_change_keep_the_sdk_path(recorder: tuple[str, Any]) -> None:
    base_url, seen = recorder
    for backend in (
        {"default_query": {"api-version": "1"}},
        {"http_client": openai.DefaultAsyncHttpxClient()},
    ):
        client = make_client(f"openai:m@{base_url}", ClientOptions(max_retries=0, backend_options=backend))
        assert completions(client).direct is None
        await client.create(MESSAGES)
        await client.close()
    assert len(seen) == 2


async def test_status_errors_are_the_sdks_with_their_headers_and_body(openai_server: OpenAIServer) -> None:
    client = make_client(f"openai:m@{openai_server.base_url}", ClientOptions(max_retries=0))
    assert completions(client).direct is not None
    openai_server.set_faults(fail_first=1, fail_first_with="429", retry_after_s=2.0)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.create(MESSAGES)
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.code == "rate_limit_exceeded"  # the JSON error body, parsed as the SDK does
    openai_server.set_faults(fail_first=1, fail_first_with="500")
    with pytest.raises(openai.InternalServerError):
        await client.create(MESSAGES)
    assert client.stats().errors == {"RateLimitError": 1, "InternalServerError": 1}
    assert (await client.create(MESSAGES)).content  # and the pool still serves the next call
    await client.close()


async def test_a_refused_connection_is_a_connection_error_and_gives_its_slot_back() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_client(
        f"openai:m@http://127.0.0.1:{port}/v1", ClientOptions(max_retries=0, max_concurrency=1)
    )
    assert completions(client).direct is not None
    with pytest.raises(openai.APIConnectionError) as caught:
        await client.create(MESSAGES)
    assert not isinstance(caught.value, openai.APITimeoutError)
    assert client.free_slots() == (1, 0, 0)
    await client.close()


@pytest.mark.parametrize("kind", ["html", "empty", "error_200", "no_choices"])
async def test_garbage_and_oversized_replies_are_named_on_the_direct_path(
    openai_server: OpenAIServer, kind: str
) -> None:
    client = make_client(
        f"openai:m@{openai_server.base_url}", ClientOptions(max_retries=0, max_reply_bytes=400)
    )
    assert completions(client).direct is not None
    openai_server.set_faults(fail_first=1, fail_first_with=kind)
    with pytest.raises(GarbageReplyError):
        await client.create(MESSAGES)
    openai_server.script("x" * 2000)  # a valid completion, over the 400-byte cap
    with pytest.raises(ReplyTooLargeError, match="--max-reply-bytes 400"):
        await client.create(MESSAGES)
    await client.close()
