"""A cap on the total time of one model call, retries and backoff included (``synth run --call-budget``).

``--timeout`` bounds each attempt; with ``--retries 5`` a server that never answers in time costs six
timeouts plus the backoff per call, and on a slow server the abandoned attempts pile up. The budget cancels
the whole call when it runs out: the cancellation reaches the HTTP request, which closes its connection
(servers that honour disconnects stop generating), and the step fails as ``timeout`` with a reason that
says what to change.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from synth.models.forwarding import ClientView


class CallBudgetExceeded(TimeoutError):
    """A call used its whole budget (attempts, retries and backoff together)."""


class CallBudget(ClientView):
    """A client whose ``create`` gives up after ``seconds`` in total; the rest is the wrapped client's."""

    def __init__(self, inner: Any, seconds: float) -> None:
        super().__init__(inner)
        self._seconds = seconds

    async def create(self, messages: Sequence[Any], **kwargs: Any) -> Any:
        deadline = asyncio.timeout(self._seconds)
        try:
            async with deadline:
                return await self.inner.create(messages, **kwargs)
        except TimeoutError as exc:
            if not deadline.expired():
                raise  # an attempt's own --timeout, retries exhausted within the budget
            raise CallBudgetExceeded(
                f"call budget of {self._seconds:g} s spent (attempts, retries and backoff together) "
                "waiting for the reply; a slow server or a large default max_tokens: set --sampling "
                "max_tokens=N, or raise --call-budget"
            ) from exc

    async def create_stream(self, messages: Sequence[Any], **kwargs: Any) -> AsyncGenerator[Any, None]:
        async with asyncio.timeout(self._seconds):
            async for chunk in self.inner.create_stream(messages, **kwargs):
                yield chunk


def timeout_text(client: Any) -> str:
    """What an attempt timeout with no message of its own means, for a step's error."""
    options = getattr(client, "options", None)
    seconds = getattr(options, "timeout_s", None)
    after = f" after {seconds:g} s" if isinstance(seconds, int | float) else ""
    return (
        f"timed out{after} waiting for the reply (per attempt, --timeout); a slow server or a large "
        "default max_tokens: set --sampling max_tokens=N or raise --timeout"
    )
