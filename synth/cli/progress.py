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
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import timedelta
from typing import Any, Protocol

from synth.engine.worker_calls import calls_and_retries

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


class Counted(Protocol):
    """What the printer follows: the progress bar's counts by status and the rows this run has to do."""

    counts: Mapping[str, int]
    total: int | None


class BatchProgress:
    """Formats and prints the progress line; the watched counts and the clients are read at each tick.

    ``counts``: rows this run finished by status (``ok``, ``failed``, ``filtered``); ``total``: rows this
    run has to do (None when the input's size is unknown); ``clients``: the run's managed model clients,
    for calls in flight and retries (None when the calls run elsewhere, e.g. on Ray actors: the line then
    leaves both out rather than print zeros).
    """

    def __init__(
        self,
        name: str,
        clients: Callable[[], Iterable[Any]] | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        write: Callable[[str], None] = _stdout_line,
    ) -> None:
        self.name, self._clients = name, clients
        self._clock, self._write = clock, write
        self._started = clock()
        self._source: Counted | None = None

    def watch(self, source: Counted) -> None:
        """Read ``source.counts`` and ``source.total`` from now on (the bar exists once the run starts)."""
        self._source = source

    def line(self) -> str:
        counts = self._source.counts if self._source else {}
        total = self._source.total if self._source else None
        ok, failed, filtered = (int(counts.get(k, 0)) for k in ("ok", "failed", "filtered"))
        done, elapsed = ok + failed + filtered, self._clock() - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        calls = ""
        if self._clients is not None:
            in_flight, retries = calls_and_retries(self._clients())
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

    @contextlib.contextmanager
    def every(self, seconds: float) -> Iterator[BatchProgress]:
        """Print a line every ``seconds`` (0: never) while the block runs, and a last one when it ends
        normally. A plain ``with`` (called from a coroutine): it sits beside the progress bar's ``with``."""
        if seconds <= 0:
            yield self
            return
        task = asyncio.get_running_loop().create_task(self._tick(seconds), name="synth-batch-progress")
        try:
            yield self
        finally:
            task.cancel()  # takes effect at the task's next await: it prints nothing after this
        self.print()
