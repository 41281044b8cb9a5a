"""Calls in flight and retries of ``--workers`` processes, for the parent's progress line.

The workers make the calls, so the parent's own model clients stay at zero: each worker sends its clients'
counters over its event pipe every :data:`CALLS_EVERY_S` (and once at its end), and the parent shows their
sum (:class:`WorkerCalls`, in the shape of a model client's ``stats()``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any, Protocol


class _Sender(Protocol):
    def send(self, kind: str, payload: Any) -> None: ...


class WorkerCalls:
    """The workers' calls in flight and retries, summed, in the shape of a model client's ``stats()``: what
    the parent's progress line shows (its own clients make no calls). Workers report them every
    :data:`CALLS_EVERY_S`."""

    def __init__(self) -> None:
        self.workers: list[Any] = []  # synth.engine.workers._Worker

    def clients(self) -> list[Any]:
        return [self]

    def stats(self) -> SimpleNamespace:
        in_flight = sum(w.calls[0] for w in self.workers if w.status is None)
        return SimpleNamespace(in_flight=in_flight, retries=sum(w.calls[1] for w in self.workers))


def calls_and_retries(clients: Iterable[Any]) -> tuple[int, int]:
    """Calls in flight and retries so far over ``clients`` (model clients with ``stats()``): what a
    progress line shows, in one process (``synth.cli.progress``) or reported by a worker."""
    stats = [client.stats() for client in clients if hasattr(client, "stats")]
    return sum(s.in_flight for s in stats), sum(s.retries for s in stats)


#: How often a worker sends its clients' calls in flight and retries to the parent (progress lines).
CALLS_EVERY_S = 0.5
#: The call counters of this worker's clients, set by the work function once it built them.
_calls_of_this_worker: Callable[[], tuple[int, int]] | None = None


def report_calls(counters: Callable[[], tuple[int, int]]) -> None:
    """Called in a worker by its work function: where its calls in flight and retries are read."""
    global _calls_of_this_worker
    _calls_of_this_worker = counters


async def reporting(work: Any, events: _Sender) -> Any:  # pragma: no cover - in the child
    """Run ``work``, sending the call counters every :data:`CALLS_EVERY_S` while it runs."""

    async def report() -> None:
        while True:
            await asyncio.sleep(CALLS_EVERY_S)
            if _calls_of_this_worker is not None:
                events.send("calls", list(_calls_of_this_worker()))

    reporter = asyncio.create_task(report())
    try:
        return await work
    finally:
        reporter.cancel()
        if _calls_of_this_worker is not None:  # the final retries count
            events.send("calls", [0, _calls_of_this_worker()[1]])
