"""A call's concurrency slot, held while its HTTP exchange is on the wire and not a moment longer.

``--max-calls N`` promises the backend at most N requests in flight. A slot taken before the client builds
the request and given back after it has parsed the reply also covers that CPU work and, on a busy event
loop, every wait for the loop between those steps: measured at 128 calls in flight, a synth call held its
slot ~4 ms longer than the bare SDK's, so fewer requests were on the wire than the limit allowed, and rows
waiting behind a slow reply lost the most (``bench/throughput.py``, the straggler case).

For an OpenAI-compatible backend :class:`~synth.models.managed.ManagedClient` therefore hands the attempt's
:class:`CallSlot` down in a context variable, and two ``httpx`` event hooks on the SDK's HTTP client take it
as the request leaves (:func:`take_slot`) and give it back once the reply body has been read
(:func:`give_slot_back`, installed after the reply guard that reads the body). The attempt's deadline
starts when the slot is taken, as before: waiting for a slot never counts against ``--timeout``. Whatever
happens in between (a refused connection, a cancelled row), the attempt gives back a slot it still holds.
Streams and other backends take the slot around the whole attempt (:meth:`CallSlot.take` directly).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from synth.models.reply_guard import http_event_hooks

#: The slot of the attempt running in this task, for the HTTP hooks; None outside a managed ``create``.
CURRENT: ContextVar[CallSlot | None] = ContextVar("synth_call_slot", default=None)

#: Marks an inner client whose HTTP client carries the hooks (set by :func:`install_slot_hooks`).
ATTRIBUTE = "takes_call_slots"


class CallSlot:
    """One attempt's slot: taken at most once at a time, given back idempotently, timed while held."""

    def __init__(
        self,
        acquire: Callable[[], Awaitable[Any]],
        release: Callable[[], None],
        timeout_s: float | None,
        count_waiting: Callable[[int], None],
    ) -> None:
        self._acquire, self._release, self._timeout_s = acquire, release, timeout_s
        self._deadline: asyncio.Timeout | None = None
        self.held = False
        self.taken_at: float | None = None
        self.given_back_at: float | None = None
        # The attempt waits for its slot from its start until it first holds one, wherever it takes it:
        # ``--workers`` claims rows by that count (``Runner._room_for_a_row``), and a call still building
        # its request on a busy loop is as much a claim on a slot as one blocked at the semaphore.
        self._count_waiting = count_waiting
        self._waiting = True
        count_waiting(1)

    def _stop_waiting(self) -> None:
        if self._waiting:
            self._waiting = False
            self._count_waiting(-1)

    def deadline(self) -> asyncio.Timeout:
        """The attempt's timeout: running from now if the slot is already held, else from :meth:`take`."""
        self._deadline = asyncio.timeout(self._timeout_s if self.held else None)
        return self._deadline

    async def take(self) -> None:
        if self.held:
            return
        await self._acquire()
        self._stop_waiting()
        self.held = True
        if self.taken_at is None:
            self.taken_at = time.perf_counter()
            if self._deadline is not None and self._timeout_s is not None:
                self._deadline.reschedule(asyncio.get_running_loop().time() + self._timeout_s)

    def give_back(self) -> None:
        """Give the slot back if held; either way the attempt no longer waits for one (it is over)."""
        self._stop_waiting()
        if self.held:
            self.held = False
            self.given_back_at = time.perf_counter()
            self._release()

    def held_s(self) -> float:
        """Seconds from taking the slot to giving it back (or to now while held): the backend's latency."""
        if self.taken_at is None:
            return 0.0
        end = self.given_back_at if self.given_back_at is not None and not self.held else time.perf_counter()
        return end - self.taken_at


async def take_slot(request: Any) -> None:
    """httpx request hook: wait for the current attempt's slot before the request is sent."""
    slot = CURRENT.get()
    if slot is not None:
        await slot.take()


async def give_slot_back(response: Any) -> None:
    """httpx response hook (after the reply guard has read the body): the exchange is over."""
    slot = CURRENT.get()
    if slot is not None:
        slot.give_back()


def install_slot_hooks(client: Any) -> None:
    """Add the hooks to the HTTP client under an autogen OpenAI client (after :func:`install_reply_guard`,
    whose response hook reads the body) and mark ``client`` so :class:`ManagedClient` hands its slots down."""
    hooks = http_event_hooks(client, "hold call slots")
    hooks.setdefault("request", []).append(take_slot)
    hooks.setdefault("response", []).append(give_slot_back)
    setattr(client, ATTRIBUTE, True)


def takes_call_slots(client: Any) -> bool:
    """True when ``client`` (or the backend under its views) takes slots in its HTTP hooks."""
    return bool(getattr(client, ATTRIBUTE, False))
