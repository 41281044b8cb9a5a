"""The forwarding base of client wrappers, and what each wrapper changes (streams, views, usage)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import pytest
from autogen_core.models import (
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    ModelInfo,
    RequestUsage,
    UserMessage,
)
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

from synth.models import SupportsLogprobs, make_client
from synth.models.budget import CallBudget
from synth.models.forwarding import ClientView, ForwardingClient
from synth.models.local.client import LocalChatCompletionClient
from synth.models.replay import ReplayExhaustedError
from synth.recording import SAMPLE_KEY, CallRecorder
from synth.sampling import SamplingOverride
from synth.testing import OpenAIServer

MESSAGES = [UserMessage(content="hi there", source="user")]
INFO = ModelInfo(
    vision=False, function_calling=True, json_output=True, family="unknown", structured_output=True
)


def result(text: str = "ok", prompt: int = 3, completion: int = 1) -> CreateResult:
    return CreateResult(
        finish_reason="stop", content=text, usage=RequestUsage(prompt, completion), cached=False
    )


class Backend(ChatCompletionClient):
    """A backend that logs every member called on it, with the arguments, and answers distinctly."""

    def __init__(self, delay: float = 0.0) -> None:
        self.log: list[tuple[str, Any]] = []
        self.delay = delay

    async def create(self, messages: Sequence[LLMMessage], **kwargs: Any) -> CreateResult:
        self.log.append(("create", kwargs))
        await asyncio.sleep(self.delay)
        return result()

    async def create_stream(  # type: ignore[override]
        self, messages: Sequence[LLMMessage], **kwargs: Any
    ) -> AsyncGenerator[str | CreateResult, None]:
        self.log.append(("create_stream", kwargs))
        yield "o"
        await asyncio.sleep(self.delay)
        yield result()

    async def close(self) -> None:
        self.log.append(("close", None))

    def actual_usage(self) -> RequestUsage:
        self.log.append(("actual_usage", None))
        return RequestUsage(11, 12)

    def total_usage(self) -> RequestUsage:
        self.log.append(("total_usage", None))
        return RequestUsage(21, 22)

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        self.log.append(("count_tokens", tools))
        return 7

    def remaining_tokens(
        self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []
    ) -> int:
        self.log.append(("remaining_tokens", tools))
        return 93

    @property
    def capabilities(self) -> Any:  # deprecated by AutoGen, still abstract
        self.log.append(("capabilities", None))
        return {"vision": False, "function_calling": True, "json_output": True}

    @property
    def model_info(self) -> ModelInfo:
        self.log.append(("model_info", None))
        return INFO


async def use_every_member(client: Any) -> dict[str, Any]:
    """Call each abstract member of ``ChatCompletionClient`` once; what each returned, by name."""
    return {
        "create": await client.create(MESSAGES, json_output=True, include_usage=True),
        "create_stream": [c async for c in client.create_stream(MESSAGES, extra_create_args={"seed": 1})],
        "close": await client.close(),
        "actual_usage": client.actual_usage(),
        "total_usage": client.total_usage(),
        "count_tokens": client.count_tokens(MESSAGES, tools=["t"]),
        "remaining_tokens": client.remaining_tokens(MESSAGES),
        "capabilities": client.capabilities,
        "model_info": client.model_info,
    }


async def test_forwarding_client_hands_every_member_to_inner() -> None:
    inner = Backend()
    got = await use_every_member(ForwardingClient(inner))
    # every abstract member (so a member AutoGen adds fails here until it is forwarded), each once
    assert set(got) == set(ChatCompletionClient.__abstractmethods__)
    assert [name for name, _ in inner.log] == list(got)
    calls = dict(inner.log)
    assert calls["create"] == {"json_output": True, "include_usage": True}  # arguments pass on whole
    assert calls["create_stream"] == {"extra_create_args": {"seed": 1}}
    assert calls["count_tokens"] == ["t"] and calls["remaining_tokens"] == ()
    assert got["create"].content == "ok" and got["create_stream"][0] == "o"
    assert got["actual_usage"] == RequestUsage(11, 12) and got["total_usage"] == RequestUsage(21, 22)
    assert (got["count_tokens"], got["remaining_tokens"], got["model_info"]) == (7, 93, INFO)
    assert got["capabilities"]["function_calling"] is True


async def test_client_view_shows_the_inner_attributes_and_copies() -> None:
    class Scoring(Backend):
        spec = "fake:m"

        async def continuation_nll(self, requests: Sequence[Any]) -> list[float]:
            return [0.5]

    view = ClientView(Scoring())
    assert view.spec == "fake:m" and await view.continuation_nll([]) == [0.5]
    assert isinstance(view, SupportsLogprobs) and not isinstance(ClientView(Backend()), SupportsLogprobs)
    with pytest.raises(AttributeError):
        _ = view.missing
    assert copy.copy(view).spec == "fake:m"  # no recursion through __getattr__ before inner is set


async def test_call_recorder_records_its_own_calls_and_forwards_the_rest() -> None:
    inner = Backend()
    recorder = CallRecorder(inner, sampling={"temperature": 0.3}, sample=2)
    chunks = [c async for c in recorder.create_stream(MESSAGES, extra_create_args={"seed": 4})]
    assert len(chunks) == 1 and isinstance(chunks[0], CreateResult)  # roles never stream: one final chunk
    assert inner.log == [("create", {"extra_create_args": {"temperature": 0.3, "seed": 4, SAMPLE_KEY: 2}})]
    assert recorder.calls == 1 and recorder.turns[0].raw == "ok"
    assert recorder.actual_usage() == recorder.total_usage() == RequestUsage(3, 1)  # its calls, not inner's
    await recorder.close()  # the shared client outlives the recorder
    assert recorder.count_tokens(MESSAGES) == 7 and recorder.model_info == INFO
    assert [name for name, _ in inner.log] == ["create", "count_tokens", "model_info"]


async def test_sampling_override_lays_settings_over_streams_too() -> None:
    inner = Backend()
    view = SamplingOverride(inner, {"temperature": 0.0})
    await view.create(MESSAGES, extra_create_args={"temperature": 0.9, "seed": 1})
    assert [c async for c in view.create_stream(MESSAGES)][-1].content == "ok"  # type: ignore[union-attr]
    assert [args for _, args in inner.log] == [
        {"extra_create_args": {"temperature": 0.0, "seed": 1}},
        {"extra_create_args": {"temperature": 0.0}},
    ]


async def test_call_budget_bounds_a_stream() -> None:
    budget = CallBudget(Backend(delay=5.0), 0.05)
    with pytest.raises(TimeoutError):
        async for _ in budget.create_stream(MESSAGES):
            pass
    assert await CallBudget(Backend(), 5.0).create(MESSAGES) == result()


async def test_replay_stream_replays_and_says_when_the_file_ran_out(tmp_path: Path) -> None:
    path = tmp_path / "replies.jsonl"
    path.write_text('"one"\n')
    client = make_client(f"replay:{path}")
    chunks = [c async for c in client.create_stream(MESSAGES)]
    assert isinstance(chunks[-1], CreateResult) and chunks[-1].content == "one"
    with pytest.raises(ReplayExhaustedError, match=r"all 1 scripted replies are used; add lines"):
        async for _ in client.create_stream(MESSAGES):
            pass


async def test_local_stream_is_the_whole_reply_then_the_result() -> None:
    seen: list[dict[str, Any]] = []

    class Scripted(LocalChatCompletionClient):
        def __init__(self) -> None:  # no model: only the streaming contract is under test
            pass

        async def create(self, messages: Sequence[LLMMessage], **kwargs: Any) -> CreateResult:  # type: ignore[override]
            seen.append(kwargs)
            return result("whole reply")

    chunks = [
        c async for c in Scripted().create_stream(MESSAGES, json_output=True, extra_create_args={"seed": 2})
    ]
    assert chunks[0] == "whole reply" and isinstance(chunks[1], CreateResult) and len(chunks) == 2
    assert seen == [{"json_output": True, "extra_create_args": {"seed": 2}}]


class Answer(BaseModel):
    answer: str


async def test_openai_stream_sends_a_structured_request_as_a_schema(openai_server: OpenAIServer) -> None:
    openai_server.script('{"answer": "yes"}')
    client = make_client(f"openai:m@{openai_server.base_url}")
    chunks = [c async for c in client.create_stream(MESSAGES, json_output=Answer)]
    assert isinstance(chunks[-1], CreateResult) and chunks[-1].content == '{"answer": "yes"}'
    sent = openai_server.requests[-1]
    assert sent["stream"] is True and sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["name"] == "Answer"
    await client.close()
