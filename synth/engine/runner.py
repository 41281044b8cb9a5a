"""The batch engine: stream seed rows through a graph with bounded concurrency, one writer, resume.

At most ``concurrency`` graph runs are in flight; a new one starts the moment one finishes (no batch
barriers). Every finished row - ok or failed - goes through one queue to one writer task, which commits
small batches to the run's SQLite store. Each row runs under a LangGraph SQLite checkpointer whose
``thread_id`` is the trajectory id, so a row interrupted mid-graph resumes from its last finished node;
a row whose record is already stored is skipped. Rows are never held in memory beyond those in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from synth import __version__
from synth.engine.cache import CALL_SCOPE
from synth.engine.checkpoints import InlineSqliteSaver, replays_history
from synth.engine.inputs import SeedRow
from synth.engine.logs import redact, secret_values
from synth.engine.quiet_gc import quiet_gc
from synth.engine.store import RunStore
from synth.graph import ModelSet, SynthGraph, steps_of
from synth.sampling import effective_sampling
from synth.trajectory import Provenance, Trajectory, Usage, content_hash, row_key, trajectory_id, utc_now

#: How often a ``--workers`` process with no room for another row looks again (see ``_room_for_a_row``).
ROOM_RECHECK_S = 0.05
WRITE_BATCH = 256
#: How long the writer lets finished rows gather before it commits them in one transaction, on the event
#: loop's thread. Not in a worker thread: SQLite releases the GIL on every statement step, and each time
#: the thread takes it back from the busy loop costs both threads context switches (measured at C = 64,
#: 200 ms: ~5 switches and ~0.2 ms of CPU per row, a tenth of the engine's cost). A WAL commit with
#: ``synchronous=NORMAL`` does not wait for the disk; one commit per 50 ms holds the loop well under 1 %
#: of the time. A kill before the commit loses no work a re-run cannot redo: the rows run again (from their
#: checkpoints, which are deleted only after the commit).
WRITE_COALESCE_S = 0.05


@dataclass
class RunSummary:
    """What one ``run()`` did; ``counts`` has ok / failed / filtered for rows written this time."""

    counts: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    usage: Usage = field(default_factory=Usage)
    elapsed_s: float = 0.0
    #: Per model spec: calls, retries, errors by type, cache hits (filled by the session).
    clients: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def written(self) -> int:
        return sum(self.counts.values())


def run_fingerprint(
    graph: SynthGraph,
    options: Mapping[str, Any],
    model_specs: Mapping[str, str],
    sampling: Mapping[str, Any] | None = None,
) -> str:
    """What makes two runs' records comparable: graph, its role templates, options, models and the run's
    ``--sampling`` (only when set, so runs without it keep their fingerprint)."""
    identity = {
        "graph": graph.name,
        "version": graph.version,
        "templates": graph.template_hashes(),
        "options": dict(options),
        "models": dict(model_specs),
    }
    if sampling:
        identity["sampling"] = dict(sampling)
    return content_hash(identity)


class Runner:
    def __init__(
        self,
        graph: SynthGraph,
        models: ModelSet,
        store: RunStore,
        *,
        options: Mapping[str, Any] | None = None,
        concurrency: int = 16,
        checkpoints: bool = True,
        on_event: Callable[[str, str, Any], None] | None = None,
    ) -> None:
        """``on_event(trajectory_id, node, update)`` sees every node's state update as it finishes
        (``synth run --trace``); without it rows run with plain ``ainvoke``."""
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.graph = graph
        self.models = models
        self.store = store
        self.options = graph.resolve_options(options or {})
        self.concurrency = concurrency
        self.checkpoints = checkpoints
        self.on_event = on_event
        self.fingerprint = run_fingerprint(graph, self.options, models.specs, models.sampling)
        self._secrets = secret_values()
        self._resumable: set[str] = set()
        self._lines: dict[str, str] = {}  # source line -> the id of the row it holds (this run's read)
        self._slots = asyncio.Semaphore(concurrency)  # rows in flight (replaced per run, see _feed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._room_changed = asyncio.Event()
        self._rows_over = asyncio.Event()  # every row of the run has finished (set per run, see run)
        self._unstarted = 0  # row tasks created that have not run yet (see _room_for_a_row)
        self._provenance = Provenance(
            graph=graph.name,
            graph_version=graph.version,
            fingerprint=self.fingerprint,
            role_templates=graph.template_hashes(),
            models=dict(models.specs),
            sampling=effective_sampling(graph, models.sampling),
            synth_version=__version__,
        )

    async def run(
        self,
        rows: Iterable[SeedRow],
        *,
        limit: int | None = None,
        retry_failed: bool = False,
        on_record: Callable[[Trajectory], None] | None = None,
        on_skip: Callable[[], None] | None = None,
        occurrences: Mapping[str, int] | None = None,
        skip: Collection[str] = (),
        shard: Callable[[int], bool] | None = None,
    ) -> RunSummary:
        """Process ``rows`` (lazily consumed). ``retry_failed`` re-runs only rows stored as failed.

        ``on_record`` sees each record once it is stored; ``on_skip`` is called for each row skipped
        because its record already exists (or, with ``retry_failed``, because it did not fail).
        A slice of a larger input (a Ray block) passes ``occurrences``: how often each row key occurred
        before the slice, so identical rows get the ids a whole-input run gives them; and ``skip``: ids
        already stored elsewhere (the run's merged store), treated like records of this store.
        ``shard(index)`` says whether this process runs the row at input ``index`` (a worker of
        :mod:`synth.engine.workers`: asked in input order, just before the row would start); every row still
        counts for the ids of identical rows after it.
        """
        summary = RunSummary()
        started = time.perf_counter()
        compiled = self.graph.build(self.models, **self.options)
        queue: asyncio.Queue[Trajectory | None] = asyncio.Queue(maxsize=self.concurrency * 2)
        self._rows_over = asyncio.Event()
        with quiet_gc(), self._checkpointer(hold_start=not replays_history(compiled)) as saver:
            self._resumable = saver.thread_ids() if saver is not None else set()
            if saver is not None:
                compiled = compiled.copy(update={"checkpointer": saver})
                self._drop_stored_checkpoints(saver)
            writer = asyncio.create_task(self._writer(queue, saver, summary, on_record))
            try:
                await self._feed(
                    compiled,
                    rows,
                    queue,
                    summary,
                    limit=limit,
                    retry_failed=retry_failed,
                    on_skip=on_skip,
                    occurrences=Counter(occurrences or {}),
                    skip=skip,
                    shard=shard,
                )
            finally:
                self._rows_over.set()  # the writer commits what it holds now, without waiting out the window
                await queue.put(None)
                await writer
            self.store.drop_replaced(self._lines, failed_only=limit is not None)  # a fixed line: one record
        summary.elapsed_s = time.perf_counter() - started
        return summary

    async def _feed(
        self,
        compiled: Any,
        rows: Iterable[SeedRow],
        queue: asyncio.Queue[Trajectory | None],
        summary: RunSummary,
        *,
        limit: int | None,
        retry_failed: bool,
        on_skip: Callable[[], None] | None,
        occurrences: Counter[str],
        skip: Collection[str],
        shard: Callable[[int], bool] | None = None,
    ) -> None:
        failed = self.store.failed_ids()
        done = self.store.finished_ids() | (set() if retry_failed else failed) | set(skip)
        failed_lines = self.store.failed_sources() if retry_failed else set()  # a fixed line is retried too
        lines = self._lines = {}
        slots = self._slots = asyncio.Semaphore(self.concurrency)
        tasks = self._tasks = set()
        self._room_changed = asyncio.Event()
        self._unstarted = 0
        try:
            for index, row in enumerate(rows):
                if limit is not None and index >= limit:
                    break
                key = row_key(row.data)
                occurrence = occurrences[key]
                occurrences[key] += 1
                tid = trajectory_id(key, occurrence, self.fingerprint)
                # every row, not only the ones this worker claims: a row that moved to another's line is kept
                lines[row.source] = tid
                if shard is not None:
                    await self._room_for_a_row()
                    if not shard(index):
                        continue
                if tid in done or (retry_failed and tid not in failed and row.source not in failed_lines):
                    summary.skipped += 1
                    if on_skip is not None:
                        on_skip()
                    continue
                if row.error:
                    await queue.put(self._trajectory(tid, row, {}, error=row.error))
                    continue
                await slots.acquire()
                scope = f"{key}#{occurrence}"
                self._unstarted += 1
                task = asyncio.create_task(self._run_row(compiled, tid, scope, row, queue))
                tasks.add(task)
                task.add_done_callback(self._row_done)
            if tasks:
                await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise

    async def _room_for_a_row(self) -> None:
        """Wait until a row could start here without a long queue: a row slot free, and fewer rows waiting
        for a call slot than the free call slots plus a quarter of all of them.

        A ``--workers`` process asks this before it claims the next row. Claiming on row slots alone
        (``--concurrency``, often twice the call slots), a worker kept rows waiting for its own call slots
        while another worker's sat idle: at the start of a run (64 rows at 200 ms: 0.6 s with two
        workers, 0.37 s with one) and at its end. Claiming only for free call slots, a freed slot waited
        for a new row's set-up (graph, templates, ~1 ms of CPU on a busy loop): C = 128, 200 ms, two
        workers: 534 rows/s. A quarter of the slots' worth of rows waiting hides that set-up (565 rows/s;
        a half: 561) and keeps the imbalance at a run's end to that many rows. Waiting: rows queued for a
        call slot, and rows claimed whose task has not started yet (they are about to ask); rows busy
        outside model calls (a tool, retrieval) do not count, so ``--concurrency`` above the call slots
        still keeps the slots busy for such graphs. Re-checked whenever a row finishes, and every
        :data:`ROOM_RECHECK_S` while the worker has no room (not when a row starts: until it reaches its
        first call, a new row would look busy elsewhere)."""
        while True:
            self._room_changed.clear()
            if self._slots.locked():
                await self._slots.acquire()
                self._slots.release()
            counts = [c.free_slots() for c in self.models.clients() if hasattr(c, "free_slots")]
            if not self._tasks or not counts:
                return
            free = sum(free for free, _, _ in counts)
            ahead = (free + sum(in_flight for _, in_flight, _ in counts)) // 4  # see the docstring
            waiting = self._unstarted + sum(waiting for _, _, waiting in counts)
            if free + ahead > waiting:
                return
            with contextlib.suppress(TimeoutError):  # a slot freed inside a row changes it too: look again
                async with asyncio.timeout(ROOM_RECHECK_S):
                    await self._room_changed.wait()

    async def _run_row(
        self, compiled: Any, tid: str, scope: str, row: SeedRow, queue: asyncio.Queue[Trajectory | None]
    ) -> None:
        self._unstarted -= 1
        CALL_SCOPE.set(scope)  # this task's context: the call cache keys every call of the row by it
        config = {"configurable": {"thread_id": tid}, "recursion_limit": 200}
        started = utc_now()
        saver = compiled.checkpointer if self.checkpoints else None
        if saver is not None and tid not in self._resumable:
            saver.expect_new(tid)
        try:
            final = await self._invoke(compiled, config, row)
            trajectory = self._trajectory(tid, row, final, started=started)
        except Exception as exc:  # a bug or an unexpected backend error: the row fails, the run goes on
            state = await self._saved_state(compiled, config)
            try:
                trajectory = self._trajectory(tid, row, state, error=error_chain(exc), started=started)
            except Exception:  # the saved state itself is unusable: keep the row, without its steps
                trajectory = self._trajectory(tid, row, {}, error=error_chain(exc), started=started)
        finally:
            if saver is not None:
                saver.forget(tid)
        await queue.put(trajectory)

    async def _invoke(self, compiled: Any, config: dict[str, Any], row: SeedRow) -> dict[str, Any]:
        tid = config["configurable"]["thread_id"]
        if self.checkpoints and tid in self._resumable:  # only rows a previous run left checkpoints for
            self._resumable.discard(tid)
            snapshot = await compiled.aget_state(config)
            # Interrupted mid-graph: resume from the last node. A kill right after the input checkpoint
            # leaves no `next` but a finished __start__ task whose writes are pending: resume that too.
            if snapshot.next or snapshot.tasks:
                return await self._drive(compiled, None, config, durability="sync")
            if snapshot.values:  # finished before the record was written
                return dict(snapshot.values)
        # "sync" durability: a node's checkpoint is on disk before the next node starts, so a SIGKILL at
        # any moment leaves a state the row can resume from (the default "async" mode can lose it).
        # Without a checkpointer LangGraph must not be given a durability (it fails on it).
        state = self.graph.initial_state(dict(row.data))
        if not self.checkpoints:
            return await self._drive(compiled, state, config)
        return await self._drive(compiled, state, config, durability="sync")

    async def _drive(self, compiled: Any, state: Any, config: dict[str, Any], **kw: Any) -> dict[str, Any]:
        """``ainvoke``; with an ``on_event`` hook, ``astream`` node updates to it and return the final state
        (the last ``values`` chunk is what ``ainvoke`` returns)."""
        if self.on_event is None:
            return await compiled.ainvoke(state, config, **kw)  # type: ignore[no-any-return]
        final: dict[str, Any] = {}
        tid = config["configurable"]["thread_id"]
        async for mode, chunk in compiled.astream(state, config, stream_mode=["updates", "values"], **kw):
            if mode == "values":
                final = chunk
                continue
            for node, update in chunk.items():
                self.on_event(tid, node, update or {})
        return final

    async def _saved_state(self, compiled: Any, config: dict[str, Any]) -> dict[str, Any]:
        if not self.checkpoints:
            return {}
        with contextlib.suppress(Exception):
            return dict((await compiled.aget_state(config)).values)
        return {}

    def _row_done(self, task: asyncio.Task[None]) -> None:
        self._slots.release()
        self._tasks.discard(task)
        self._room_changed.set()

    def _trajectory(
        self, tid: str, row: SeedRow, state: Mapping[str, Any], *, error: str | None = None, started: str = ""
    ) -> Trajectory:
        steps = steps_of(state)
        usage = sum((s.usage for s in steps), Usage())
        error = error or state.get("error")
        if error:  # servers may echo the key they were sent (or a URL with its credentials) in an error
            error = redact(error, self._secrets)
            for step in steps:
                step.error = redact(step.error, self._secrets) if step.error else step.error
        extra: dict[str, Any] = {}
        if error is None:
            extra = self.graph.to_trajectory(state)
        provenance = self._provenance.model_copy(update={"started_at": started, "finished_at": utc_now()})
        return Trajectory(
            id=tid,
            graph=self.graph.name,
            seed=dict(row.data),
            source=row.source,
            steps=steps,
            status="failed" if error else "ok",
            error=error,
            provenance=provenance,
            usage=usage,
            **extra,
        )

    async def _writer(
        self,
        queue: asyncio.Queue[Trajectory | None],
        saver: Any,
        summary: RunSummary,
        on_record: Callable[[Trajectory], None] | None,
    ) -> None:
        finished = False
        while not finished:
            batch: list[Trajectory] = []
            item = await queue.get()
            if item is not None and queue.empty() and not self._rows_over.is_set():
                with contextlib.suppress(TimeoutError):  # let the rows finishing meanwhile share the commit
                    async with asyncio.timeout(WRITE_COALESCE_S):
                        await self._rows_over.wait()
            while item is not None:
                batch.append(item)
                if len(batch) >= WRITE_BATCH or queue.empty():
                    break
                item = queue.get_nowait()
            finished = item is None
            if not batch:
                continue
            self.store.write_rows(self.store.rows(batch))  # on the loop: see WRITE_COALESCE_S
            if saver is not None:  # the records are durable: their checkpoints are no longer needed
                saver.delete_threads(t.id for t in batch)
            for trajectory in batch:
                summary.counts[trajectory.status] += 1
                summary.usage = summary.usage + trajectory.usage
                if on_record is not None:
                    on_record(trajectory)

    def _drop_stored_checkpoints(self, saver: InlineSqliteSaver) -> None:
        """Checkpoints of rows whose record is stored: a kill between the record's commit and the deletion
        of its checkpoints (two databases) leaves them, and a re-run skips the row, so nothing else would."""
        stale = self._resumable & self.store.stored_ids()
        if stale:
            saver.delete_threads(stale)
            self._resumable -= stale

    @contextlib.contextmanager
    def _checkpointer(self, *, hold_start: bool) -> Iterator[InlineSqliteSaver | None]:
        if not self.checkpoints:
            yield None
            return
        # With every model call cached, a row's last node re-runs for free after a kill: its writes need
        # not be committed (synth/engine/checkpoints.py); without the cache they spare those calls.
        cached = all(getattr(client, "cache", None) is not None for client in self.models.clients())
        path = self.store.checkpoint_path
        with InlineSqliteSaver.open(path, hold_start=hold_start, keep_last_writes=not cached) as saver:
            yield saver


def error_chain(exc: BaseException, limit: int = 5) -> str:
    """``Type: message <- caused by Type: message ...``: the whole chain, for the stored record."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < limit:
        parts.append(f"{type(current).__name__}: {str(current)[:500]}")
        current = current.__cause__ or current.__context__
    return " <- caused by ".join(parts)
