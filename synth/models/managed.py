"""ManagedClient: one wrapper that gives every backend the same operational behaviour.

Roles never see timeouts, rate limits or flaky networks: they call ``create`` and get a result or a final
error. This wrapper is the single place that bounds concurrency (a semaphore per client, shared by every
row using it; for HTTP backends a slot is held only while the request is on the wire,
:mod:`synth.models.call_slot`), applies a per-attempt timeout, retries transient failures with jittered
exponential backoff (honouring ``Retry-After``), merges default sampling parameters, and counts tokens, calls,
retries, errors and latency. Client errors (4xx other than 408/429) are never retried: repeating a bad
request only burns quota.

It is also where the run's call cache (:mod:`synth.engine.cache`) sits, *outside* the concurrency slots: a hit
never waits for a slot nor counts as a backend call. The sample index a role passes under
:data:`~synth.recording.SAMPLE_KEY` is consumed here (it is part of the cache key) and never sent to a
backend, which would reject the unknown parameter.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from autogen_core.models import ChatCompletionClient, CreateResult, LLMMessage
from pydantic import BaseModel

from synth.engine.cache import CallCache, call_key, reply_validates, score_key
from synth.engine.logs import redact_error
from synth.models.base import ScoreRequest, SupportsLogprobs
from synth.models.call_slot import CURRENT, CallSlot, takes_call_slots
from synth.models.forwarding import ForwardingClient
from synth.models.limiter import AdaptiveLimit
from synth.models.policy import (
    ClientOptions,
    ClientStats,
    backoff_s,
    is_overload,
    is_retryable,
    retry_after_s,
)
from synth.models.reply_guard import reply_fault
from synth.recording import SAMPLE_KEY

__all__ = [
    "ClientOptions",
    "ClientStats",
    "ManagedClient",
    "ManagedLogprobsClient",
    "is_retryable",
    "retry_after_s",
]

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[Any]]

_COUNTERS = (
    "calls", "ok", "failed", "cancelled", "attempts", "retries", "prompt_tokens", "completion_tokens",
    "latency_s", "backoff_s", "in_flight", "max_in_flight", "cache_hits",
)  # fmt: skip
_FLOAT_COUNTERS = {"latency_s", "backoff_s"}
Slots = asyncio.Semaphore | AdaptiveLimit
#: The ``create`` arguments besides messages and sampling that change a reply, hence the cache key.
_KEYED = ("json_output", "tools", "tool_choice")


class ManagedClient(ForwardingClient):
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
        cache: CallCache | None = None,
    ) -> None:
        super().__init__(inner)
        self.options = options or ClientOptions()
        self.spec = spec
        #: The run's call cache (set per run folder by :func:`synth.engine.session.build_models`); None = off.
        self.cache = cache
        self._sleep: Sleep = sleep if sleep is not None else asyncio.sleep
        # One semaphore per event loop: asyncio primitives are loop-bound, and a client may outlive one
        # asyncio.run() (CLI phases, tests) or be used from several loops (threads, Ray actors).
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Slots] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._counts: dict[str, float] = dict.fromkeys(_COUNTERS, 0)
        self._errors: dict[str, int] = {}
        self._waiting = 0  # attempts begun that have not yet held a slot (all loops)
        #: ``create`` holds a slot only for its HTTP exchange (see :mod:`synth.models.call_slot`).
        self._late_slots = takes_call_slots(inner)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(spec={self.spec!r}, max_concurrency={self.options.max_concurrency}, "
            f"timeout_s={self.options.timeout_s}, max_retries={self.options.max_retries})"
        )

    # -- accounting -------------------------------------------------------------------------------------
    def stats(self) -> ClientStats:
        with self._lock:
            counts = {k: (v if k in _FLOAT_COUNTERS else int(v)) for k, v in self._counts.items()}
            return ClientStats(**counts, errors=dict(self._errors))  # type: ignore[arg-type]

    def _add(self, **deltas: float) -> None:
        # Plain counters under a lock: this runs several times per call, at hundreds of calls a second.
        with self._lock:
            counts = self._counts
            for key, value in deltas.items():
                counts[key] += value
            if "in_flight" in deltas and counts["in_flight"] > counts["max_in_flight"]:
                counts["max_in_flight"] = counts["in_flight"]

    def _semaphore(self) -> Slots:
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            ceiling = self.options.max_concurrency
            sem = AdaptiveLimit(ceiling) if self.options.adaptive else asyncio.Semaphore(ceiling)
            self._semaphores[loop] = sem
        return sem

    def free_slots(self) -> tuple[int, int, int]:
        """(call slots free, calls in flight, calls waiting for a slot) in this process: what a
        ``--workers`` process weighs before it claims another row (``Runner._room_for_a_row``). A call
        waits from the start of its attempt until it holds a slot (see :class:`CallSlot`)."""
        in_flight = int(self._counts["in_flight"])
        return self.concurrency_limit() - in_flight, in_flight, self._waiting

    def concurrency_limit(self) -> int:
        """Calls currently allowed in flight (this loop's adaptive limit, else ``max_concurrency``)."""
        limits = [s.allowed for s in list(self._semaphores.values()) if isinstance(s, AdaptiveLimit)]
        return max(limits) if limits else self.options.max_concurrency

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
    async def _attempt(
        self, op: Callable[[], Awaitable[T]], *, keep_slot: bool = False, late_slot: bool = False
    ) -> tuple[T, float]:
        """One attempt: hold a concurrency slot (never during backoff), apply the timeout, count errors.

        With ``late_slot`` the backend's HTTP hooks take the slot only for the exchange itself
        (:mod:`synth.models.call_slot`); otherwise it is taken here, for the whole attempt. With
        ``keep_slot`` the slot stays taken after success (a stream that is still open); the caller
        must then call :meth:`_release`.
        """
        sem = self._semaphore()
        take, give_back = (lambda: self._acquire(sem)), (lambda: self._release(sem))
        slot = CallSlot(take, give_back, self.options.timeout_s, self._count_waiting)
        self._add(attempts=1)
        ok = False
        token = CURRENT.set(slot if late_slot else None)
        try:
            if not late_slot:
                await slot.take()
            async with slot.deadline():  # no extra task, unlike wait_for
                result = await op()
            ok = True
            latency = slot.held_s()
            if isinstance(sem, AdaptiveLimit):
                sem.on_success(latency)
            return result, latency
        except Exception as exc:
            fault = reply_fault(exc)  # an SDK may wrap a reply fault in a "Connection error."
            failure = fault if fault is not None else exc
            self._error(failure)
            if isinstance(sem, AdaptiveLimit) and is_overload(failure):
                sem.on_overload()
            if failure is not exc:
                raise failure from None
            raise
        finally:
            CURRENT.reset(token)
            if not (ok and keep_slot):
                slot.give_back()

    async def _acquire(self, sem: Slots) -> None:
        await sem.acquire()
        self._add(in_flight=1)

    def _count_waiting(self, delta: int) -> None:
        self._waiting += delta

    def _release(self, sem: Slots) -> None:
        self._add(in_flight=-1)
        sem.release()

    async def _with_retries(
        self, op: Callable[[], Awaitable[T]], *, keep_slot: bool = False, late_slot: bool = False
    ) -> tuple[T, float]:
        """Run ``op`` under the retry policy; on final failure re-raise the last error (type and status
        kept) with a note that lists every attempt, so logs show the whole story.

        A plain loop rather than tenacity: the first attempt (the common case) costs nothing extra."""
        self._add(calls=1)
        history: list[str] = []
        try:
            while True:
                try:
                    return await self._attempt(op, keep_slot=keep_slot, late_slot=late_slot)
                except Exception as exc:
                    history.append(f"attempt {len(history) + 1}: {type(exc).__name__}: {exc}"[:300])
                    if len(history) > self.options.max_retries or not is_retryable(exc):
                        raise
                    delay = backoff_s(self.options, exc, len(history))
                    self._add(retries=1, backoff_s=delay)
                await self._sleep(delay)
        except asyncio.CancelledError:
            self._add(cancelled=1)
            raise
        except Exception as exc:
            self._add(failed=1)
            redact_error(exc, history)
            verdict = "not retryable" if not is_retryable(exc) else "retries exhausted"
            attempts = "\n  ".join(history)
            exc.add_note(f"[{self.spec or 'model'}] {verdict} after {len(history)} attempt(s):\n  {attempts}")
            raise

    def _prepare(
        self, messages: Sequence[LLMMessage], kwargs: Mapping[str, Any]
    ) -> tuple[dict[str, Any], str | None]:
        """The call's arguments as sent on (default sampling laid under the call's, the sample index taken
        out: a backend would reject it) and its cache key (None when the cache is off)."""
        args = {**self.options.sampling, **kwargs.get("extra_create_args", {})}
        sample = int(args.pop(SAMPLE_KEY, 0) or 0)
        key = None
        if self.cache is not None:
            keyed = {name: kwargs[name] for name in _KEYED if name in kwargs}
            key = call_key(self.spec, messages, args, sample=sample, **keyed)
        return {**kwargs, "extra_create_args": args}, key

    def _cached(self, key: str | None, json_output: bool | type[BaseModel] | None) -> CreateResult | None:
        if key is None or self.cache is None:
            return None
        hit = self.cache.get_result(key, json_output)
        if hit is not None:
            self._add(cache_hits=1)
        return hit

    def _store(
        self, key: str | None, result: CreateResult, json_output: bool | type[BaseModel] | None
    ) -> None:
        """Cache a finished call, unless its reply fails the schema it was asked for: the repair turn, a
        resumed node or ``--retry-failed`` must ask the model again rather than replay a bad answer."""
        if key is not None and self.cache is not None and reply_validates(result, json_output):
            self.cache.put_result(key, result)

    # -- ChatCompletionClient (everything else is forwarded to ``inner``) -----------------------------
    async def create(self, messages: Sequence[LLMMessage], **kwargs: Any) -> CreateResult:
        sent, key = self._prepare(messages, kwargs)
        json_output = kwargs.get("json_output")
        hit = self._cached(key, json_output)
        if hit is not None:
            return hit
        result, latency = await self._with_retries(
            lambda: self.inner.create(messages, **sent), late_slot=self._late_slots
        )
        self._record_result(result, latency)
        self._store(key, result, json_output)
        return result

    async def create_stream(
        self, messages: Sequence[LLMMessage], **kwargs: Any
    ) -> AsyncGenerator[str | CreateResult, None]:
        """Retried until the first chunk arrives (nothing was shown yet); later failures propagate.
        The timeout applies to each wait for the next chunk; the slot is held for the whole stream.
        A cached call replays as its final result alone; a finished stream's final result is cached."""
        sent, key = self._prepare(messages, kwargs)
        json_output = kwargs.get("json_output")
        hit = self._cached(key, json_output)
        if hit is not None:
            yield hit
            return
        timeout = self.options.timeout_s

        async def open_stream() -> tuple[AsyncGenerator[str | CreateResult, None], str | CreateResult]:
            gen = self.inner.create_stream(messages, **sent)
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
                    self._store(key, item, json_output)
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


class ManagedLogprobsClient(ManagedClient):
    """A :class:`ManagedClient` over a backend with exact log-probabilities; scoring shares the limits."""

    async def continuation_nll(self, requests: Sequence[ScoreRequest]) -> list[float]:
        """Scores, with each request looked up in the call cache; only the misses reach the backend."""
        inner = self.inner
        assert isinstance(inner, SupportsLogprobs)
        cache = self.cache
        keys = [score_key(self.spec, r.messages, r.continuation) for r in requests] if cache else []
        scores: list[float | None] = [cache.get_score(k) for k in keys] if cache else [None] * len(requests)
        missing = [i for i, s in enumerate(scores) if s is None]
        if cache and len(missing) < len(requests):
            self._add(cache_hits=len(requests) - len(missing))
        if missing:
            todo = [requests[i] for i in missing]
            result, latency = await self._with_retries(lambda: inner.continuation_nll(todo))
            self._add(ok=1, latency_s=latency)
            for i, score in zip(missing, result, strict=True):
                scores[i] = score
                if cache:
                    cache.put_score(keys[i], score)
        return [float(s) for s in scores if s is not None]
