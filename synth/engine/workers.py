"""``synth run --workers N``: N worker processes share one run folder, one core each.

One Python process runs the whole engine on one core (asyncio, the GIL): at fast backends (a local vLLM,
the loopback server) its CPU per call, not the backend, limits the rows per second. With ``--workers N``
the parent process keeps the run folder's lock, the progress bar and the log, and forks N workers. Worker
runs the ordinary async :class:`~synth.engine.runner.Runner` over the rows it claims (:class:`RowClaims`: a
shared counter hands out the next input row to whichever worker first has a call slot free for it, so a
worker that drew slow rows never leaves the others idle at the end of a run, nor does one worker queue rows
for its own busy slots while another's sit idle; every worker reads the whole input, so
identical rows get the ids a one-process run gives them), with its own model clients, checkpointer and
call-cache connection on the folder's shared SQLite files:

* **exactly once**: claims are disjoint, and every record is an ``INSERT OR REPLACE`` keyed by the
  trajectory id in a SQLite transaction (WAL; writers wait for each other up to 60 s), so a row can never
  be stored twice, whatever runs or dies;
* **resume**: checkpoints and the call cache are the same files as for one process. A re-run with any
  number of workers skips stored rows and resumes a row from its checkpoint, whichever worker left it;
* **the call limit is global**: ``--max-calls`` (and ``--concurrency``) are split evenly between the
  workers (worker ``i`` gets ``max_calls // N``, plus one for the first ``max_calls % N``), so the
  backend never sees more than ``--max-calls`` calls in flight. With ``--adaptive`` each worker's AIMD
  limit grows up to its share and halves on its own 429s;
* **a dead worker** (killed, out of memory) ends nothing else: the others go on with every row not yet
  claimed, then ``synth run`` fails with which worker died; re-running the same command resumes the rows
  it had in flight.

Workers are forked (not spawned): they start at once, with the graph and libraries already imported
(a spawned worker would import them again: ~1.5 s of CPU each). They report each stored record and a
final summary to the parent over a pipe (one JSON line each), and exit if the parent dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import json
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from synth.engine.runner import RunSummary
from synth.engine.worker_calls import WorkerCalls, calls_and_retries, report_calls, reporting
from synth.errors import SynthError
from synth.trajectory import Trajectory, Usage

#: Rows per worker below which the automatic rule does not fork (start-up and memory cost more than it saves).
MIN_ROWS_PER_WORKER = 1000
#: Calls in flight per worker below which the automatic rule does not fork: one process keeps up with that.
MIN_CALLS_PER_WORKER = 32
MAX_AUTO_WORKERS = 4


def auto_workers(specs: dict[str, str], max_calls: int, rows: int | None, *, cores: int | None = None) -> int:
    """The default for ``--workers``: ``min(cores, 4)`` for OpenAI-compatible backends when there is enough
    work to share (at least :data:`MIN_CALLS_PER_WORKER` call slots and :data:`MIN_ROWS_PER_WORKER` rows per
    worker), else 1. In-process backends (``local:``, ``replay:``) always get 1: each worker would load
    the model again."""
    if any(not spec.startswith("openai:") for spec in specs.values()):
        return 1
    cores = cores or os.cpu_count() or 1
    by_rows = MAX_AUTO_WORKERS if rows is None else rows // MIN_ROWS_PER_WORKER
    return max(1, min(cores, MAX_AUTO_WORKERS, max_calls // MIN_CALLS_PER_WORKER, by_rows))


def share(total: int, workers: int, index: int) -> int:
    """Worker ``index``'s part of ``total`` (call slots, rows in flight): even, the remainder to the first."""
    return total // workers + (1 if index < total % workers else 0)


class RowClaims:
    """Which worker runs which input row: a counter shared by the forked workers, next row to the first asker.

    Why not a fixed split (row ``i`` to worker ``i mod N``): rows do not take equal time (5 % of calls
    10x slower, retries, longer graphs), and a fixed split ends with one worker still busy on its share
    while the others sit idle. Each worker asks :meth:`owns` for every input index, in order, just before
    the row would start (when it has room for it: a call slot, see ``Runner._room_for_a_row``): it gets
    the row if no worker has claimed it yet.
    A claim is one ``lockf`` (a POSIX record lock: per process, released by the OS if the holder dies, so
    a killed worker never blocks the others) and an 8-byte ``pread``/``pwrite`` of an unlinked file made
    before the fork: microseconds per row. Claims only move forward, so the ones a worker gets are
    disjoint from every other worker's; a worker skips the indexes below the counter that others took.
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the run; unlinked
        self._fd = self._file.fileno()
        os.pwrite(self._fd, (0).to_bytes(8, "little"), 0)
        self._mine = -1  # the last index this process claimed

    def owns(self, index: int) -> bool:
        """True when ``index`` is this process's row (claimed now or before); asked in increasing order."""
        if index <= self._mine:
            return index == self._mine
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            next_free = int.from_bytes(os.pread(self._fd, 8, 0), "little")
            if next_free > index:  # another worker took it
                return False
            os.pwrite(self._fd, (index + 1).to_bytes(8, "little"), 0)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        self._mine = index
        return True

    def close(self) -> None:
        self._file.close()


#: What a worker runs: ``await work(index, owns, on_record, on_skip)``; ``owns`` is :meth:`RowClaims.owns`.
Work = Callable[[int, Callable[[int], bool], Callable[[Trajectory], None], Callable[[], None]], Any]


@dataclass
class _Worker:
    index: int
    pid: int
    events: int  # read end of the worker's event pipe
    summary: dict[str, Any] | None = None
    status: int | None = None
    calls: tuple[int, int] = (0, 0)  # its clients' calls in flight and retries, as last reported


async def run_workers(
    count: int,
    work: Work,
    *,
    on_record: Callable[[Any], None],
    on_skip: Callable[[], None],
    on_start: Callable[[int, int], None] = lambda index, pid: None,
    calls: WorkerCalls | None = None,
) -> RunSummary:
    """Fork ``count`` workers; worker ``i`` runs ``await work(i, owns, on_record, on_skip)`` (``owns``: which
    input rows it takes, :class:`RowClaims`, shared by the workers) and returns its :class:`RunSummary`.
    The parent relays records and skips to its callbacks (records as light objects with ``id``,
    ``status``, ``source``, ``error`` and ``usage.total_tokens``), keeps each worker's latest call counters
    in ``calls``, and merges the summaries."""
    death_read, death_write = os.pipe()  # the parent holds the write end: EOF in a worker = parent gone
    workers: list[_Worker] = calls.workers if calls is not None else []
    claims = RowClaims()  # the workers' copy of its file stays open in them; this process's closes below
    # Objects alive now are shared with the workers copy-on-write; frozen, a worker's collector (and its own
    # gc.freeze, synth.engine.quiet_gc) never walks them, which would copy every page of the heap.
    gc.freeze()
    try:
        for index in range(count):
            events_read, events_write = os.pipe()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child ends in os._exit (its coverage is not collected)
                os.close(events_read)
                os.close(death_write)
                for other in workers:
                    os.close(other.events)
                _child(index, work, claims.owns, events_write, death_read)
            os.close(events_write)
            workers.append(_Worker(index, pid, events_read))
            on_start(index, pid)
        gc.unfreeze()
        await asyncio.gather(*(_follow(w, on_record, on_skip) for w in workers))
    except BaseException:
        gc.unfreeze()
        for worker in workers:
            if worker.status is None:
                _signal(worker.pid, signal.SIGTERM)
        raise
    finally:
        claims.close()
        os.close(death_read)
        os.close(death_write)
        for worker in workers:
            if worker.status is None:
                worker.status = await asyncio.to_thread(_wait, worker.pid)
    return _merge(workers)


async def _follow(worker: _Worker, on_record: Callable[[Any], None], on_skip: Callable[[], None]) -> None:
    """Relay one worker's events until its pipe closes, then reap it."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)
    pipe = os.fdopen(worker.events, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        while line := await reader.readline():
            kind, payload = json.loads(line)
            if kind == "records":
                for tid, status, source, error, tokens in payload:
                    usage = SimpleNamespace(total_tokens=tokens)
                    on_record(SimpleNamespace(id=tid, status=status, source=source, error=error, usage=usage))
            elif kind == "skip":
                on_skip()
            elif kind == "calls":
                worker.calls = (int(payload[0]), int(payload[1]))
            elif kind == "summary":
                worker.summary = payload
    finally:
        transport.close()
    worker.status = await asyncio.to_thread(_wait, worker.pid)


def _wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _merge(workers: list[_Worker]) -> RunSummary:
    summary = RunSummary()
    dead = [w for w in workers if w.status != 0 or w.summary is None]
    for worker in workers:
        got = worker.summary or {}
        summary.counts.update(got.get("counts", {}))
        summary.skipped += got.get("skipped", 0)
        summary.usage = summary.usage + Usage.model_validate(got.get("usage", {}))
        summary.elapsed_s = max(summary.elapsed_s, got.get("elapsed_s", 0.0))
        for spec, stats in got.get("clients", {}).items():
            summary.clients[spec] = merge_client_stats(summary.clients.get(spec), stats)
    if dead:
        what = ", ".join(f"worker {w.index} (pid {w.pid}) {_death(w.status)}" for w in dead)
        raise WorkerError(
            f"{what}; the others finished the other rows ({dict(summary.counts)} written). Every stored "
            "record is complete: re-run the same command to resume the rest.",
            summary=summary,
        )
    return summary


def _death(status: int | None) -> str:
    if status is not None and status < 0:
        return f"was killed by signal {signal.Signals(-status).name}"
    return f"exited with status {status}"


class WorkerError(SynthError):
    """A worker process died; ``summary`` holds what the others wrote."""

    def __init__(self, message: str, *, summary: RunSummary) -> None:
        super().__init__(message)
        self.summary = summary


def merge_client_stats(into: dict[str, Any] | None, stats: dict[str, Any]) -> dict[str, Any]:
    """Per-spec client counters of two workers: sums (errors by type too), latency weighted by calls."""
    if into is None:
        return dict(stats)
    out = dict(into)
    for key, value in stats.items():
        if key == "errors":
            out[key] = {k: into[key].get(k, 0) + stats[key].get(k, 0) for k in {*into[key], *stats[key]}}
        elif key == "mean_latency_s":
            ok = into.get("ok", 0) + stats.get("ok", 0)
            total = into[key] * into.get("ok", 0) + value * stats.get("ok", 0)
            out[key] = round(total / ok, 4) if ok else 0.0
        elif isinstance(value, int | float):
            out[key] = into.get(key, 0) + value
    return out


def folder_work(request: Any, graph: Any, folder: Path, count: int) -> Callable[..., Any]:
    """What worker ``i`` of ``count`` runs: :meth:`Runner.run` over the rows of ``request`` it claims into
    ``folder``, with its share of the call and row limits and its own clients, store and cache handles.

    Creates the shared SQLite files first, in this process: switching a new file to WAL takes a lock
    that SQLite does not wait for, so N workers creating it at once would fail with "database is locked"."""
    from synth.engine.cache import CallCache
    from synth.engine.checkpoints import InlineSqliteSaver
    from synth.engine.session import CACHE_FILE

    if request.checkpoints:
        with InlineSqliteSaver.open(folder / "checkpoints.sqlite"):
            pass
    if request.cache:
        CallCache(folder / CACHE_FILE).close()

    async def work(
        index: int,
        owns: Callable[[int], bool],
        on_record: Callable[[Trajectory], None],
        on_skip: Callable[[], None],
    ) -> RunSummary:
        from synth.engine.inputs import read_rows
        from synth.engine.runner import Runner
        from synth.engine.session import build_models, client_report
        from synth.engine.store import RunStore

        mine = request.model_copy(
            update={
                "max_calls": share(request.max_calls, count, index),
                "concurrency": max(1, share(request.concurrency, count, index)),
            }
        )
        models = build_models(request.models, mine)
        report_calls(lambda: calls_and_retries(models.clients()))
        store = RunStore(folder)
        cache = CallCache(folder / CACHE_FILE) if request.cache else None
        try:
            for client in models.clients():
                client.cache = cache
            runner = Runner(
                graph, models, store, options=request.options, concurrency=mine.concurrency,
                checkpoints=request.checkpoints,
            )  # fmt: skip
            summary = await runner.run(
                read_rows(request.input, graph.seed_model, max_field_bytes=request.max_field_bytes),
                limit=request.limit,
                retry_failed=request.retry_failed,
                on_record=on_record,
                on_skip=on_skip,
                shard=owns,
            )
            summary.clients = client_report(models)
            return summary
        finally:
            if cache is not None:
                cache.close()
            for client in models.clients():
                client.cache = None
                await client.close()
            store.close()

    return work


# -- the worker side --------------------------------------------------------------------------------------
def _child(
    index: int,
    work: Work,
    owns: Callable[[int], bool],
    events_fd: int,
    death_fd: int,
) -> None:  # pragma: no cover - runs in the forked child
    """Run ``work`` in the forked process and ``os._exit`` (never return into the parent's stack)."""
    code = 1
    try:
        asyncio.events._set_running_loop(None)  # the parent's loop is "running" in this thread's copy
        signal.set_wakeup_fd(-1)  # the parent's loop's wake-up socket is not ours
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        threading.Thread(target=_exit_with_parent, args=(death_fd,), daemon=True).start()
        events = _Events(events_fd)
        summary: RunSummary = asyncio.run(reporting(work(index, owns, events.record, events.skip), events))
        events.flush()
        events.send("summary", summary_payload(summary))
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def _exit_with_parent(fd: int) -> None:  # pragma: no cover - runs in the forked child
    """Block on the parent's pipe; EOF means the parent died: stop at once (its lock is gone too)."""
    while os.read(fd, 1):
        pass
    os._exit(3)


class _Events:
    """JSON lines on the worker's pipe (blocking writes: the parent reads continuously). Records are
    batched: the runner reports a whole write batch in one loop turn, and that becomes one line."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._records: list[list[Any]] = []

    def send(self, kind: str, payload: Any) -> None:
        data = (json.dumps([kind, payload], separators=(",", ":")) + "\n").encode()
        while data:
            data = data[os.write(self._fd, data) :]

    def record(self, trajectory: Trajectory) -> None:
        if not self._records:
            asyncio.get_running_loop().call_soon(self.flush)
        usage = trajectory.usage.total_tokens
        self._records.append([trajectory.id, trajectory.status, trajectory.source, trajectory.error, usage])

    def flush(self) -> None:
        if self._records:
            records, self._records = self._records, []
            self.send("records", records)

    def skip(self) -> None:
        self.send("skip", None)


def summary_payload(summary: RunSummary) -> dict[str, Any]:
    return {
        "counts": dict(summary.counts),
        "skipped": summary.skipped,
        "usage": summary.usage.model_dump(),
        "elapsed_s": summary.elapsed_s,
        "clients": summary.clients,
    }
