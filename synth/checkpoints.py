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
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from langgraph.checkpoint.sqlite import SqliteSaver


class InlineSqliteSaver(SqliteSaver):
    """``SqliteSaver`` with async methods that run the sync ones directly (see the module doc)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self._new: set[str] = set()

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: Path | str) -> Iterator[InlineSqliteSaver]:
        conn = sqlite3.connect(str(path), check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            saver = cls(conn)
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
        ids = [(str(t),) for t in thread_ids]
        if not ids:
            return
        with self.cursor() as cur:
            cur.executemany("DELETE FROM checkpoints WHERE thread_id = ?", ids)
            cur.executemany("DELETE FROM writes WHERE thread_id = ?", ids)

    def expect_new(self, thread_id: str) -> None:
        """``thread_id`` has no checkpoint (nothing wrote it yet): answer reads for it without a query."""
        self._new.add(thread_id)

    def forget(self, thread_id: str) -> None:
        self._new.discard(thread_id)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        self._new.discard(str(config["configurable"]["thread_id"]))
        return super().put(config, checkpoint, metadata, new_versions)

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        self._new.discard(str(config["configurable"]["thread_id"]))
        super().put_writes(config, writes, task_id, task_path)

    # -- async interface, inline ---------------------------------------------------------------------
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        configurable = config["configurable"]
        if str(configurable["thread_id"]) in self._new and not configurable.get("checkpoint_id"):
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
        self.delete_thread(thread_id)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        return self.get_delta_channel_history(config=config, channels=channels)
