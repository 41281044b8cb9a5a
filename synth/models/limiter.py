"""An adaptive concurrency limit (AIMD) for a model client: back off on 429s, grow while latency holds.

A fixed ``max_calls`` is a guess: too low leaves a fast backend idle, too high turns a rate-limited API into
a storm of 429s and backoff. With ``--adaptive`` the client starts low and adjusts the number of calls it
lets through, as TCP does with its window:

* every successful call adds ``1 / limit`` (about +1 per round of ``limit`` calls) while the smoothed
  latency stays within ``2x`` the best seen — the backend is keeping up;
* when latency climbs past ``3x`` the best the backend is queueing: the limit shrinks by the same step;
* a 429 (or 503) halves it, at most once per smoothed round trip (one burst of 429s is one signal).

The limit stays within ``[1, ceiling]``; ``ceiling`` is ``max_calls``. It is per event loop, like the
fixed semaphore it replaces, and has the semaphore's ``acquire``/``release`` interface.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class AdaptiveLimit:
    """AIMD limit on calls in flight; see the module doc. Not thread-safe: one event loop."""

    def __init__(self, ceiling: int, *, start: int = 4, floor: int = 1) -> None:
        if ceiling < 1:
            raise ValueError("ceiling must be >= 1")
        self.ceiling = ceiling
        self.floor = max(1, min(floor, ceiling))
        self.limit = float(max(self.floor, min(start, ceiling)))
        self.in_flight = 0
        self.overloads = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._best_s: float | None = None
        self._smoothed_s: float | None = None
        self._last_cut = 0.0

    @property
    def allowed(self) -> int:
        return int(self.limit)

    async def acquire(self) -> bool:
        while self.in_flight >= self.allowed or self._waiters_ahead():
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(future)
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._wake()  # it was woken and cancelled: hand the wake-up on
                raise
            finally:
                if future in self._waiters:
                    self._waiters.remove(future)
            if self.in_flight < self.allowed:
                break
        self.in_flight += 1
        return True

    def _waiters_ahead(self) -> bool:
        return any(not w.done() for w in self._waiters)

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        free = self.allowed - self.in_flight
        for waiter in list(self._waiters):
            if free <= 0:
                break
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    # -- signals from the client --------------------------------------------------------------------------
    def on_success(self, latency_s: float) -> None:
        self._best_s = latency_s if self._best_s is None else min(self._best_s, latency_s)
        smoothed = self._smoothed_s
        self._smoothed_s = latency_s if smoothed is None else 0.8 * smoothed + 0.2 * latency_s
        step = 1.0 / max(self.limit, 1.0)
        if self._smoothed_s <= 2.0 * self._best_s:
            self.limit = min(float(self.ceiling), self.limit + step)
        elif self._smoothed_s > 3.0 * self._best_s:
            self.limit = max(float(self.floor), self.limit - step)
        self._wake()

    def on_overload(self) -> None:
        """A 429/503: halve the limit, once per smoothed round trip."""
        now = time.monotonic()
        if now - self._last_cut < (self._smoothed_s or 0.0):
            return
        self._last_cut = now
        self.overloads += 1
        self.limit = max(float(self.floor), self.limit / 2.0)
