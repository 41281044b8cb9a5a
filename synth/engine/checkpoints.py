"""The runner's LangGraph checkpointer: SQLite, written inline on the event loop, one batch delete per write.

Why not ``AsyncSqliteSaver``: it sends every statement through aiosqlite's worker thread (a queue put, a
thread wake-up and a loop wake-up per statement, two or three per checkpoint) behind one asyncio lock, and
its connection keeps SQLite's default ``synchronous=FULL``, which fsyncs the WAL on every commit. With
``durability="sync"`` a row pays that several times per node; measured on the one-role bench graph it
cost more CPU per row than the model call itself.

Here the statements run inline: a primary-key insert plus a commit in WAL mode with ``synchronous=NORMAL``
takes tens of microseconds and no fsync (a commit survives a killed process, which is what resume needs;
only a power cut can lose the last commits, and then the row just re-runs a node — from the call cache).
The state is serialised on the event loop in both designs. Reads for resume happen once per row that has
checkpoints (:meth:`InlineSqliteSaver.thread_ids` tells the runner which at start-up); LangGraph's own read
at the start of every invoke is answered from memory for a row the runner declared new
(:meth:`InlineSqliteSaver.expect_new`).

**What a new row does not write.** LangGraph saves two checkpoints before the first node runs: the input
(step -1) and the state after ``__start__`` copied the input into the channels (step 0), plus the
``__start__`` task's writes in between, and then one checkpoint after every node: with ``durability="sync"``
a node's writes and the checkpoint after them are two commits. For a row the runner declared new, the
saver keeps the row's latest root checkpoint in memory (serialised, so later in-place changes to the
state cannot leak in) and writes it in the same transaction as the first thing that needs it on disk: the
next node's writes (which refer to it), a subgraph's checkpoint, or the next checkpoint when no task wrote
in between. The input checkpoint and the ``__start__`` writes are never written (step 0 holds the same
seed), and the checkpoint after the last node is dropped with the row (:meth:`InlineSqliteSaver.forget`):
the record replaces it. So a row costs one commit per node. On disk a row lacks at most its latest
checkpoint, which is the one before it plus the writes committed since: LangGraph applies those writes on
resume without running their nodes again, and a row killed before its first node's writes starts over
from its input (what resuming from step 0 would do). Graphs with LangGraph ``DeltaChannel`` state rebuild
values by replaying the writes of every ancestor checkpoint, so for them nothing is held back
(``hold_start=False``).

**A row's last writes** (``keep_last_writes=False``, what the runner passes when every model call is
answered by the call cache on a re-run): a task whose writes schedule nothing (no ``branch:to:`` trigger,
no ``Send``, no error or interrupt) ends the row, and its writes are not committed either; nor is the
checkpoint they would have brought to disk. A kill between such a task and the record's commit runs that
last node again on the re-run, its model calls replayed from the cache; so a one-node graph writes no
checkpoint at all (~7 % of an engine call's CPU in ``bench/throughput.py``), and a longer one commits once
per node but the last. A row that never wrote anything has nothing to delete when its record is stored.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.sqlite import SqliteSaver

_INSERT_CHECKPOINT = (
    "INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, "
    "type, checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


@dataclass
class _Held:
    """A root checkpoint of a new row kept in memory: its ``checkpoints`` row, serialised."""

    row: tuple[str, str, str, str | None, str, bytes, bytes]
    is_input: bool

    @property
    def checkpoint_id(self) -> str:
        return self.row[2]


def _ends_row(configurable: Mapping[str, Any], writes: Sequence[tuple[str, Any]]) -> bool:
    """True for a root task's writes that trigger no further task: no ``branch:to:`` channel, no ``Send``
    (``__pregel_tasks``), no error, interrupt or other LangGraph-internal channel (``__...``)."""
    if configurable.get("checkpoint_ns", "") != "":
        return False
    return not any(channel.startswith(("branch:", "__")) for channel, _ in writes)


def replays_history(compiled: Any) -> bool:
    """True when the graph has ``DeltaChannel`` state (values rebuilt from every ancestor's writes)."""
    channels = getattr(compiled, "channels", {}) or {}
    return any(isinstance(channel, DeltaChannel) for channel in channels.values())


class InlineSqliteSaver(SqliteSaver):
    """``SqliteSaver`` with async methods that run the sync ones directly (see the module doc)."""

    def __init__(
        self, conn: sqlite3.Connection, *, hold_start: bool = True, keep_last_writes: bool = True
    ) -> None:
        super().__init__(conn)
        self.hold_start = hold_start
        self.keep_last_writes = keep_last_writes
        self._new: set[str] = set()  # rows declared new that nothing was written for yet
        self._holding: set[str] = set()  # rows whose latest checkpoint is kept in memory
        self._held: dict[str, _Held] = {}
        self._ending: set[str] = set()  # rows whose last task's writes were not committed

    @classmethod
    @contextlib.contextmanager
    def open(
        cls, path: Path | str, *, hold_start: bool = True, keep_last_writes: bool = True
    ) -> Iterator[InlineSqliteSaver]:
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=60.0)  # --workers share it
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            saver = cls(conn, hold_start=hold_start, keep_last_writes=keep_last_writes)
            saver.setup()
            yield saver
        finally:
            conn.close()

    # -- what the runner needs beyond LangGraph's interface ------------------------------------------
    def thread_ids(self) -> set[str]:
        """Threads (trajectory ids) with saved checkpoints: the rows a previous run left mid-graph."""
        with self.cursor(transaction=False) as cur:
            return {row[0] for row in cur.execute("SELECT DISTINCT thread_id FROM checkpoints")}

    def delete_threads(self, thread_ids: Iterable[str]) -> None:
        """Forget the checkpoints of rows whose records are stored, in one transaction."""
        wanted = [str(t) for t in thread_ids]
        ids = [(t,) for t in wanted if t not in self._new]  # nothing on disk for a new row's id
        self._new.difference_update(wanted)
        if not ids:
            return
        with self.cursor() as cur:
            cur.executemany("DELETE FROM checkpoints WHERE thread_id = ?", ids)
            cur.executemany("DELETE FROM writes WHERE thread_id = ?", ids)

    def expect_new(self, thread_id: str) -> None:
        """``thread_id`` has no checkpoint (nothing wrote it yet): answer reads for it without a query until
        something is written for it, hold its checkpoints back (see the module doc) until :meth:`forget`, and
        skip it in :meth:`delete_threads` if nothing was."""
        self._new.add(thread_id)
        if self.hold_start:
            self._holding.add(thread_id)

    def forget(self, thread_id: str) -> None:
        """The row is over (its record is queued): drop what is held for it. Its latest checkpoint is never
        written; a kill before the record's commit resumes from the one before it plus the last writes.
        Whether anything was written stays known until :meth:`delete_threads`."""
        self._holding.discard(thread_id)
        self._held.pop(thread_id, None)
        self._ending.discard(thread_id)

    # -- writes --------------------------------------------------------------------------------------
    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        if self._hold(thread_id, config, checkpoint, metadata):
            return {
                "configurable": {
                    "thread_id": configurable["thread_id"],
                    "checkpoint_ns": configurable["checkpoint_ns"],
                    "checkpoint_id": checkpoint["id"],
                }
            }
        self._new.discard(thread_id)
        self._write_held(thread_id)
        return super().put(config, checkpoint, metadata, new_versions)

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        held = self._held.get(thread_id)
        if (
            held is not None
            and held.is_input
            and configurable.get("checkpoint_ns", "") == ""
            and configurable.get("checkpoint_id") == held.checkpoint_id
        ):
            return  # __start__ copying the input into the channels: step 0 will hold the result
        if not self.keep_last_writes and thread_id in self._holding and _ends_row(configurable, writes):
            self._ending.add(thread_id)  # the row's last task: the record will replace it (module doc)
            return
        self._new.discard(thread_id)
        self._ending.discard(thread_id)
        self._write_held(thread_id)
        super().put_writes(config, writes, task_id, task_path)

    def _hold(
        self, thread_id: str, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata
    ) -> bool:
        """Keep the latest root checkpoint of a row the runner declared new in memory (serialised).

        The input checkpoint is replaced by step 0 without ever being written (step 0 holds the same seed).
        Any later checkpoint replaces the one held before it, which goes to disk first unless a task's
        writes already took it there: on disk, a row lacks at most its latest checkpoint, and that one is
        the previous checkpoint plus the writes stored since, which LangGraph applies on resume."""
        configurable = config["configurable"]
        if configurable.get("checkpoint_ns", "") != "" or thread_id not in self._holding:
            return False
        held = self._held.get(thread_id)
        is_input = metadata.get("source") == "input"
        if is_input and held is not None:  # a second input on the same thread: not a new row's run
            return False
        after_input = (
            held is not None and held.is_input and configurable.get("checkpoint_id") == held.checkpoint_id
        )
        if held is not None and not after_input and thread_id not in self._ending:
            self._write_held(thread_id)  # superseded, and no task's writes took it to disk: write it now
            with self.lock:
                self.conn.commit()
            self._new.discard(thread_id)
        type_, blob = self.serde.dumps_typed(checkpoint)
        meta = json.dumps(get_checkpoint_metadata(config, metadata), ensure_ascii=False).encode(
            "utf-8", "ignore"
        )
        parent = None if is_input else configurable.get("checkpoint_id")
        row = (thread_id, "", checkpoint["id"], parent, type_, blob, meta)
        self._held[thread_id] = _Held(row=row, is_input=is_input)
        return True

    def _write_held(self, thread_id: str) -> None:
        """Insert the held checkpoint, uncommitted: the caller's statement commits both at once."""
        held = self._held.pop(thread_id, None)
        if held is None:
            return
        with self.lock:
            self.conn.execute(_INSERT_CHECKPOINT, held.row)

    # -- reads ---------------------------------------------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        held = self._held_for(config)
        if held is None:
            return super().get_tuple(config)
        thread_id, ns, checkpoint_id, parent, type_, blob, meta = held.row
        parent_config: RunnableConfig | None = None
        if parent is not None:
            parent_config = {
                "configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": parent}
            }
        return CheckpointTuple(
            {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}},
            self.serde.loads_typed((type_, blob)),
            json.loads(meta),
            parent_config,
            [],
        )

    def _held_for(self, config: RunnableConfig) -> _Held | None:
        configurable = config["configurable"]
        held = self._held.get(str(configurable["thread_id"]))
        if held is None or configurable.get("checkpoint_ns", "") != "":
            return None
        wanted = configurable.get("checkpoint_id")
        return held if wanted in (None, held.checkpoint_id) else None

    # -- async interface, inline ---------------------------------------------------------------------
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        if thread_id in self._new and thread_id not in self._held and not configurable.get("checkpoint_id"):
            return None
        return self.get_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for item in self.list(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        self.forget(thread_id)
        self._new.discard(thread_id)
        self.delete_thread(thread_id)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        return self.get_delta_channel_history(config=config, channels=channels)


# LangGraph asks ``inspect.signature(saver.put_writes)`` whether it takes ``task_path`` at the start of every
# invoke (~70 us of CPU per row); a precomputed signature answers it at once.
for _method in (InlineSqliteSaver.put_writes, InlineSqliteSaver.aput_writes):
    _method.__signature__ = inspect.signature(_method)  # type: ignore[union-attr]
