"""A per-call view of a model client that records what each role call cost and returned.

AutoGen agents only surface the parsed message; when validation fails the raw text, the finish reason
and the usage of that call would be lost. A :class:`CallRecorder` is made for one role run, sits between
the agent and the shared client, merges the role's sampling parameters into every request, and keeps
the raw results — so a failed step still carries its raw text and its token cost.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Literal

from autogen_core import CancellationToken
from autogen_core.models import (
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    ModelCapabilities,  # type: ignore[attr-defined]
    ModelInfo,
    RequestUsage,
)
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

#: Key under which the sample index travels to the client (the call cache uses it; it is never sent).
SAMPLE_KEY = "synth_sample"


def message_dict(message: LLMMessage) -> dict[str, Any]:
    """An AutoGen message as a JSON-native chat message (``role``, ``content``, optional ``name``)."""
    role = {"SystemMessage": "system", "UserMessage": "user", "AssistantMessage": "assistant"}.get(
        type(message).__name__, "tool"
    )
    content = getattr(message, "content", "")
    out: dict[str, Any] = {"role": role, "content": content if isinstance(content, str) else str(content)}
    source = getattr(message, "source", None)
    if source and role != "system" and source != "user":
        out["name"] = source
    return out


class CallRecorder(ChatCompletionClient):
    """Delegates to ``inner``; records each ``CreateResult``; injects sampling parameters."""

    def __init__(
        self, inner: ChatCompletionClient, *, sampling: Mapping[str, Any] | None = None, sample: int = 0
    ) -> None:
        self._inner = inner
        self._sampling = dict(sampling or {})
        self._sample = sample
        self.results: list[CreateResult] = []
        #: Seconds each successful call took (retries and backoff included), in the order of ``results``.
        self.latencies: list[float] = []
        self.requests: list[list[dict[str, Any]]] = []
        self.last_error: BaseException | None = None

    @property
    def spec(self) -> str:
        return str(getattr(self._inner, "spec", type(self._inner).__name__))

    def _args(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        args = {**self._sampling, **extra}
        if self._sample:
            args[SAMPLE_KEY] = self._sample
        return args

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = (),
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        self.last_error = None
        self.requests.append([message_dict(m) for m in messages])
        started = time.perf_counter()
        try:
            result = await self._inner.create(
                messages,
                tools=tools,
                tool_choice=tool_choice,
                json_output=json_output,
                extra_create_args=self._args(extra_create_args),
                cancellation_token=cancellation_token,
            )
        except BaseException as exc:
            self.last_error = exc
            raise
        self.results.append(result)
        self.latencies.append(time.perf_counter() - started)
        return result

    async def create_stream(  # type: ignore[override]
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = (),
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        # Roles never stream; a single final chunk keeps the contract for callers that do.
        yield await self.create(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            json_output=json_output,
            extra_create_args=extra_create_args,
            cancellation_token=cancellation_token,
        )

    async def close(self) -> None:
        """The shared client outlives this per-call view: closing it is the owner's job."""

    def actual_usage(self) -> RequestUsage:
        return RequestUsage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens)

    def total_usage(self) -> RequestUsage:
        return self.actual_usage()

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = ()) -> int:
        return self._inner.count_tokens(messages, tools=tools)

    def remaining_tokens(
        self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = ()
    ) -> int:
        return self._inner.remaining_tokens(messages, tools=tools)

    @property
    def capabilities(self) -> ModelCapabilities:  # type: ignore[override]
        return self._inner.capabilities  # type: ignore[no-any-return]

    @property
    def model_info(self) -> ModelInfo:
        return self._inner.model_info

    # --- what the role reads back -------------------------------------------------------------
    @property
    def calls(self) -> int:
        return len(self.results)

    @property
    def cached_calls(self) -> int:
        return sum(1 for r in self.results if r.cached)

    @property
    def prompt_tokens(self) -> int:
        return sum(r.usage.prompt_tokens for r in self.results)

    @property
    def completion_tokens(self) -> int:
        return sum(r.usage.completion_tokens for r in self.results)

    @property
    def last_content(self) -> str:
        if not self.results:
            return ""
        content = self.results[-1].content
        return content if isinstance(content, str) else str(content)

    def transcript(self) -> list[dict[str, Any]]:
        """The last request's messages followed by the last reply: what the model saw and said."""
        if not self.requests:
            return []
        reply = [{"role": "assistant", "content": self.last_content}] if self.results else []
        return [*self.requests[-1], *reply]

    @property
    def last_finish_reason(self) -> str | None:
        return self.results[-1].finish_reason if self.results else None
