"""One base for the clients that wrap another: everything forwarded, so a wrapper writes only its change.

Every layer between a role and a backend is a client wrapping a client — :class:`~synth.models.managed.
ManagedClient` (retries, limits, cache), :class:`~synth.models.structured.StructuredClient` (structured
modes), :class:`~synth.models.budget.CallBudget`, :class:`~synth.sampling.SamplingOverride` and
:class:`~synth.recording.CallRecorder`. AutoGen's ``ChatCompletionClient`` has nine abstract members;
:class:`ForwardingClient` hands each to ``inner``, so a wrapper overrides only what it changes.

An override of ``create`` / ``create_stream`` takes ``(messages, **kwargs)`` and passes ``kwargs`` on
whole, reading only the arguments it acts on: a wrapper then never restates AutoGen's six-argument
signature, and an argument a backend adds (``include_usage``...) reaches it untouched.

:class:`ClientView` adds attribute pass-through (``__getattr__``) for per-role views, so ``spec``,
``cache``, ``options`` or ``continuation_nll`` of the client below stay visible through them and
``isinstance(view, SupportsLogprobs)`` tells the truth about the backend.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any

from autogen_core.models import (
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    ModelCapabilities,
    ModelInfo,
    RequestUsage,
)
from autogen_core.tools import Tool, ToolSchema

__all__ = ["ClientView", "ForwardingClient"]


class ForwardingClient(ChatCompletionClient):
    """A ``ChatCompletionClient`` that forwards every member to ``inner``; subclass and override a few."""

    def __init__(self, inner: ChatCompletionClient) -> None:
        self.inner = inner

    async def create(self, messages: Sequence[LLMMessage], **kwargs: Any) -> CreateResult:
        return await self.inner.create(messages, **kwargs)

    def create_stream(
        self, messages: Sequence[LLMMessage], **kwargs: Any
    ) -> AsyncGenerator[str | CreateResult, None]:
        return self.inner.create_stream(messages, **kwargs)

    async def close(self) -> None:
        await self.inner.close()

    def actual_usage(self) -> RequestUsage:
        return self.inner.actual_usage()

    def total_usage(self) -> RequestUsage:
        return self.inner.total_usage()

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = ()) -> int:
        return self.inner.count_tokens(messages, tools=tools)

    def remaining_tokens(
        self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = ()
    ) -> int:
        return self.inner.remaining_tokens(messages, tools=tools)

    @property
    def capabilities(self) -> ModelCapabilities:
        return self.inner.capabilities

    @property
    def model_info(self) -> ModelInfo:
        return self.inner.model_info


class ClientView(ForwardingClient):
    """A :class:`ForwardingClient` through which every other attribute of ``inner`` is visible too."""

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copy, unpickling): fail plainly instead of recursing
            raise AttributeError(name)
        return getattr(self.inner, name)
