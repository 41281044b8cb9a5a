"""ManagedClient: one wrapper that gives every backend the same operational behaviour.

Roles never see timeouts, rate limits or flaky networks: they call ``create`` and get a result or a final
error. This wrapper is the single place that bounds concurrency (a semaphore per client, shared by every
row using it), applies a per-attempt timeout, retries transient failures with jittered exponential
backoff (honouring ``Retry-After``), merges default sampling parameters, and counts tokens, calls,
retries, errors and latency. Client errors (4xx other than 408/429) are never retried: repeating a bad
request only burns quota.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

import openai
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
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from synth.models.base import SAMPLING_KEYS, ScoreRequest, SupportsLogprobs

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[Any]]


class ClientOptions(BaseModel):
    """Operational options for one model client. Holds no secrets: only the *name* of the key variable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_concurrency: int = Field(default=16, ge=1, description="calls in flight at once, across all rows")
    timeout_s: float | None = Field(default=120.0, gt=0, description="per attempt; None = no limit")
    max_retries: int = Field(default=5, ge=0, description="retries after the first attempt")
    backoff_base_s: float = Field(
        default=0.5, ge=0, description="first backoff; doubles each retry, jittered"
    )
    backoff_max_s: float = Field(default=30.0, ge=0)
    retry_after_max_s: float = Field(default=120.0, ge=0, description="cap on a server's Retry-After")
    sampling: dict[str, Any] = Field(default_factory=dict, description="defaults; per-call values win")
    api_key_env: str | None = Field(
        default=None, description="env var with the API key (default OPENAI_API_KEY)"
    )
    model_info: dict[str, Any] = Field(default_factory=dict, description="overrides of autogen's ModelInfo")
    backend_options: dict[str, Any] = Field(
        default_factory=dict, description="extra backend constructor kwargs"
    )

    @field_validator("sampling")
    @classmethod
    def _known_sampling(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = set(value) - set(SAMPLING_KEYS)
        if unknown:
            raise ValueError(
                f"unknown sampling keys {sorted(unknown)}; every backend understands {SAMPLING_KEYS}"
            )
        return value


@dataclass(frozen=True)
class ClientStats:
    """A snapshot of one client's accounting. ``errors`` counts failed attempts by exception type."""

    calls: int = 0
    ok: int = 0
    failed: int = 0
    cancelled: int = 0
    attempts: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    backoff_s: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)

    @property
    def mean_latency_s(self) -> float:
        """Mean duration of the successful attempt of each successful call."""
        return self.latency_s / self.ok if self.ok else 0.0


def is_retryable(exc: BaseException) -> bool:
    """Transient: 408/429/5xx, connection errors and timeouts. Not retried: other 4xx, quota exhaustion."""
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 429:
            return getattr(exc, "code", None) != "insufficient_quota"  # retrying cannot refill a quota
        return exc.status_code >= 500 or exc.status_code == 408
    return isinstance(exc, openai.APIConnectionError | TimeoutError | ConnectionError)


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` (delta-seconds or HTTP-date), if present."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000.0)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


class ManagedClient(ChatCompletionClient):
    """Wraps any ``ChatCompletionClient``; see the module doc. Build with :func:`synth.models.make_client`.

    Constructing ``ManagedClient(inner)`` returns a :class:`ManagedLogprobsClient` when ``inner`` implements
    :class:`~synth.models.base.SupportsLogprobs`, so ``isinstance(client, SupportsLogprobs)`` tells the truth.
    """

    def __new__(cls, inner: ChatCompletionClient, *args: Any, **kwargs: Any) -> ManagedClient:
        if cls is ManagedClient and isinstance(inner, SupportsLogprobs):
            cls = ManagedLogprobsClient
        return super().__new__(cls)

    def __init__(
        self,
        inner: ChatCompletionClient,
        options: ClientOptions | None = None,
        *,
        spec: str = "",
        sleep: Sleep | None = None,
    ) -> None:
        self.inner = inner
        self.options = options or ClientOptions()
        self.spec = spec
        self._sleep: Sleep = sleep if sleep is not None else asyncio.sleep
        # One semaphore per event loop: asyncio primitives are loop-bound, and a client may outlive one
        # asyncio.run() (CLI phases, tests) or be used from several loops (threads, Ray actors).
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._stats = ClientStats()
        self._errors: dict[str, int] = {}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(spec={self.spec!r}, max_concurrency={self.options.max_concurrency}, "
            f"timeout_s={self.options.timeout_s}, max_retries={self.options.max_retries})"
        )

    # -- accounting -------------------------------------------------------------------------------------
    def stats(self) -> ClientStats:
        with self._lock:
            return replace(self._stats, errors=dict(self._errors))

    def _add(self, **deltas: float) -> None:
        with self._lock:
            s = self._stats
            values = {k: getattr(s, k) + v for k, v in deltas.items()}
            if "in_flight" in values:
                values["max_in_flight"] = max(s.max_in_flight, values["in_flight"])
            self._stats = replace(s, **values)

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = self._semaphores[loop] = asyncio.Semaphore(self.options.max_concurrency)
        return sem

    def _error(self, exc: BaseException) -> None:
        with self._lock:
            name = type(exc).__name__
            self._errors[name] = self._errors.get(name, 0) + 1

    def _record_result(self, result: CreateResult, latency: float) -> None:
        self._add(
            ok=1,
            latency_s=latency,
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
        )

    # -- retry machinery --------------------------------------------------------------------------------
    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        hinted = retry_after_s(exc) if exc is not None else None
        if hinted is not None:
            delay = min(hinted, self.options.retry_after_max_s)
        else:  # "equal jitter": half fixed, half random — never ~0, yet decorrelated across rows
            ceiling = min(
                self.options.backoff_max_s, self.options.backoff_base_s * 2 ** (state.attempt_number - 1)
            )
            delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        self._add(retries=1, backoff_s=delay)
        return delay

    async def _attempt(self, op: Callable[[], Awaitable[T]], *, keep_slot: bool = False) -> tuple[T, float]:
        """One attempt: take a concurrency slot (never held during backoff), apply the timeout, count errors.

        With ``keep_slot`` the slot stays taken after success (a stream that is still open); the caller
        must then call :meth:`_release`.
        """
        sem = self._semaphore()
        await sem.acquire()
        self._add(attempts=1, in_flight=1)
        start = time.perf_counter()
        ok = False
        try:
            result = await asyncio.wait_for(op(), self.options.timeout_s)
            ok = True
            return result, time.perf_counter() - start
        except Exception as exc:
            self._error(exc)
            raise
        finally:
            if not (ok and keep_slot):
                self._release(sem)

    def _release(self, sem: asyncio.Semaphore) -> None:
        self._add(in_flight=-1)
        sem.release()

    async def _with_retries(
        self, op: Callable[[], Awaitable[T]], *, keep_slot: bool = False
    ) -> tuple[T, float]:
        """Run ``op`` under the retry policy; on final failure re-raise the last error (type and status
        kept) with a note that lists every attempt, so logs show the whole story."""
        self._add(calls=1)
        history: list[str] = []
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.options.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(is_retryable),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        return await self._attempt(op, keep_slot=keep_slot)
                    except Exception as exc:
                        history.append(f"attempt {len(history) + 1}: {type(exc).__name__}: {exc}"[:300])
                        raise
        except asyncio.CancelledError:
            self._add(cancelled=1)
            raise
        except Exception as exc:
            self._add(failed=1)
            if history:
                verdict = "not retryable" if not is_retryable(exc) else "retries exhausted"
                exc.add_note(
                    f"[{self.spec or 'model'}] {verdict} after {len(history)} attempt(s):\n  "
                    + "\n  ".join(history)
                )
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _args(self, extra_create_args: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.options.sampling, **extra_create_args}

    # -- ChatCompletionClient ---------------------------------------------------------------------------
    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        args = self._args(extra_create_args)

        def op() -> Awaitable[CreateResult]:
            return self.inner.create(
                messages,
                tools=tools,
                tool_choice=tool_choice,
                json_output=json_output,
                extra_create_args=args,
                cancellation_token=cancellation_token,
            )

        result, latency = await self._with_retries(op)
        self._record_result(result, latency)
        return result

    async def create_stream(  # type: ignore[override]
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        """Retried until the first chunk arrives (nothing was shown yet); later failures propagate.
        The timeout applies to each wait for the next chunk; the slot is held for the whole stream."""
        args = self._args(extra_create_args)
        timeout = self.options.timeout_s

        async def open_stream() -> tuple[AsyncGenerator[str | CreateResult, None], str | CreateResult]:
            gen = self.inner.create_stream(
                messages,
                tools=tools,
                tool_choice=tool_choice,
                json_output=json_output,
                extra_create_args=args,
                cancellation_token=cancellation_token,
            )
            try:
                return gen, await anext(gen)
            except StopAsyncIteration:
                raise RuntimeError(f"{self.spec or 'model'}: the stream ended before any output") from None
            except BaseException:
                await gen.aclose()
                raise

        sem = self._semaphore()
        (gen, item), latency = await self._with_retries(open_stream, keep_slot=True)
        start = time.perf_counter()
        try:
            while True:
                if isinstance(item, CreateResult):
                    self._record_result(item, latency + time.perf_counter() - start)
                yield item
                try:
                    item = await asyncio.wait_for(anext(gen), timeout)
                except StopAsyncIteration:
                    return
        except Exception as exc:
            self._error(exc)
            self._add(failed=1)
            raise
        finally:
            self._release(sem)
            await gen.aclose()

    async def close(self) -> None:
        await self.inner.close()

    def actual_usage(self) -> RequestUsage:
        return self.inner.actual_usage()

    def total_usage(self) -> RequestUsage:
        return self.inner.total_usage()

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return self.inner.count_tokens(messages, tools=tools)

    def remaining_tokens(
        self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []
    ) -> int:
        return self.inner.remaining_tokens(messages, tools=tools)

    @property
    def capabilities(self) -> ModelCapabilities:  # type: ignore[override]
        return self.inner.capabilities  # type: ignore[no-any-return]

    @property
    def model_info(self) -> ModelInfo:
        return self.inner.model_info


class ManagedLogprobsClient(ManagedClient):
    """A :class:`ManagedClient` over a backend with exact log-probabilities; scoring shares the limits."""

    async def continuation_nll(self, requests: Sequence[ScoreRequest]) -> list[float]:
        inner = self.inner
        assert isinstance(inner, SupportsLogprobs)
        result, latency = await self._with_retries(lambda: inner.continuation_nll(requests))
        self._add(ok=1, latency_s=latency)
        return result
