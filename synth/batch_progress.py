"""Plain progress lines for batch jobs: what a redirected ``synth run`` writes to its log.

Rich's live bar draws only on a terminal; under nohup, CI or a Slurm log it shows nothing until the run
ends, so a 10-minute job looks dead. When stdout is not a terminal, ``synth run`` prints one line every
``--progress-every`` seconds instead (one line; wrapped here)::

    [12:00:15 coevol] 40/200 rows (ok 38, failed 1, filtered 1) | 2.67 rows/s | 12 calls in flight
    | 3 retries | elapsed 0:00:15 | ETA 0:01:00

The printer only reads counters the run keeps anyway (the progress bar's counts, the clients' stats), on
a timer of its own: a row finishing costs it nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

#: Seconds between lines when ``--progress-every`` is not given.
DEFAULT_EVERY_S = 15.0


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def _rate(rows_per_s: float) -> str:
    """Rows per second, or per minute when slower than 0.1/s (a CPU model run would read "0.00 rows/s")."""
    if 0 < rows_per_s < 0.1:
        return f"{rows_per_s * 60:.2f} rows/min"
    return f"{rows_per_s:.2f} rows/s"


def _stdout_line(line: str) -> None:
    print(line, file=sys.stdout, flush=True)  # flushed: a log file sees each line as it is written


class BatchProgress:
    """Formats and prints the progress line; ``counts``/``total``/``clients`` are read at each tick.

    ``counts``: rows this run finished by status (``ok``, ``failed``, ``filtered``); ``total``: rows this
    run has to do (None when the input's size is unknown); ``clients``: the run's managed model clients,
    for calls in flight and retries (None when the calls run elsewhere, e.g. on Ray actors: the line then
    leaves both out rather than print zeros).
    """

    def __init__(
        self,
        name: str,
        counts: Callable[[], Mapping[str, int]],
        total: Callable[[], int | None],
        clients: Callable[[], Iterable[Any]] | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        write: Callable[[str], None] = _stdout_line,
    ) -> None:
        self.name, self._counts, self._total, self._clients = name, counts, total, clients
        self._clock, self._write = clock, write
        self._started = clock()

    def line(self) -> str:
        counts, total = self._counts(), self._total()
        ok, failed, filtered = (int(counts.get(k, 0)) for k in ("ok", "failed", "filtered"))
        done, elapsed = ok + failed + filtered, self._clock() - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        calls = ""
        if self._clients is not None:
            stats = [client.stats() for client in self._clients()]
            in_flight, retries = sum(s.in_flight for s in stats), sum(s.retries for s in stats)
            calls = f" | {in_flight} calls in flight | {retries} retries"
        if total is None:
            rows, eta = f"{done} rows", "?"
        else:
            rows = f"{done}/{total} rows"
            eta = _clock((total - done) / rate) if rate > 0 else "?"
        status = f"ok {ok}, failed {failed}, filtered {filtered}"
        return (
            f"[{time.strftime('%H:%M:%S')} {self.name}] {rows} ({status})"
            f" | {_rate(rate)}{calls} | elapsed {_clock(elapsed)} | ETA {eta}"
        )

    def print(self) -> None:
        self._write(self.line())

    async def _tick(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.print()

    @contextlib.asynccontextmanager
    async def every(self, seconds: float) -> AsyncIterator[BatchProgress]:
        """Print a line every ``seconds`` while the block runs, and a last one when it ends normally."""
        task = asyncio.create_task(self._tick(seconds), name="synth-batch-progress")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.print()
