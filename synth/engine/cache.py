"""A content-addressed call cache in the run folder, so a re-run never pays for a finished call twice.

A killed run resumes each row from its last LangGraph checkpoint, but the node that was running when the
process died starts over: without a cache, every model call that node had already finished is paid again
(a debate of four turns killed at turn three repeats three calls). ``--retry-failed`` has the same
problem one level up: the steps that succeeded before a row's failure would be re-sampled.

The key of a call is everything that determines its answer: the model spec, the messages, the sampling
parameters, the output schema (JSON schema of ``json_output``), the tools, the *sample index* (N samples
of one prompt at temperature > 0 must stay N distinct answers) and the *row scope* — the identity of the
seed row the call is made for (its content key plus occurrence number, set by the runner through
:data:`CALL_SCOPE`). The scope keeps two identical seed rows distinct: the design never merges duplicate
rows silently, and a cache shared across them would do exactly that on a re-run. It leaves the graph
fingerprint out, so a reconfigured run (``--force``) still reuses the calls whose requests did not change.

Only successful results are stored: an error is never cached, and neither is a reply that does not
validate against the output schema it was asked for (``json_output``) — a repair turn or a
``--retry-failed`` must reach the model again, not replay the bad answer. A stored reply that does not
validate (a cache written by an older version) is dropped on lookup and counts as a miss.

Storage is ``calls.sqlite`` (WAL) in the run folder. Lookups are primary-key reads on the caller's thread
(microseconds; a miss costs far less than the call it precedes). Writes go to one background thread that
commits whatever has queued up in one transaction, so the event loop never waits on the disk and a burst
of finished calls costs one commit; a result is visible to lookups from the moment it is queued.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from autogen_core.models import CreateResult, LLMMessage
from pydantic import BaseModel

from synth.recording import schema_error

#: The seed row a call is made for; the runner sets it per row (asyncio tasks inherit it).
CALL_SCOPE: contextvars.ContextVar[str] = contextvars.ContextVar("synth_call_scope", default="")

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID;
"""

_STOP = object()
#: How long the writer lets results accumulate before a commit: bounds the results a kill can lose.
COALESCE_S = 0.005


@dataclass(frozen=True)
class CacheStats:
    """Lookups that hit / missed, and results written, since the cache was opened."""

    hits: int = 0
    misses: int = 0
    writes: int = 0


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@lru_cache(maxsize=256)
def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """JSON schema of an output model (memoised: pydantic builds it in ~0.1 ms, every call would pay)."""
    return model.model_json_schema()


def _json_output(json_output: bool | type[BaseModel] | None) -> Any:
    if isinstance(json_output, type) and issubclass(json_output, BaseModel):
        return {"schema": _schema_of(json_output)}
    return json_output


def reply_validates(result: CreateResult, json_output: bool | type[BaseModel] | None) -> bool:
    """Whether ``result`` parses as the schema it was asked for, the check an AutoGen agent applies to it
    (free text, JSON mode and tool calls always do)."""
    return schema_error(result, json_output) is None


def _tool(tool: Any) -> Any:
    schema = getattr(tool, "schema", tool)
    return dict(schema) if isinstance(schema, Mapping) else str(schema)


def call_key(
    spec: str,
    messages: Sequence[LLMMessage],
    args: Mapping[str, Any],
    *,
    sample: int = 0,
    json_output: bool | type[BaseModel] | None = None,
    tools: Sequence[Any] = (),
    tool_choice: Any = "auto",
    scope: str | None = None,
) -> str:
    """The cache key of one ``create`` call (see the module doc for what goes in, and why)."""
    return _digest(
        {
            "kind": "create",
            "spec": spec,
            "messages": [m.model_dump(mode="json") for m in messages],
            "args": dict(args),
            "sample": sample,
            "json_output": _json_output(json_output),
            "tools": [_tool(t) for t in tools],
            "tool_choice": tool_choice if isinstance(tool_choice, str) else _tool(tool_choice),
            "scope": CALL_SCOPE.get() if scope is None else scope,
        }
    )


def score_key(
    spec: str, messages: Sequence[LLMMessage], continuation: str, *, scope: str | None = None
) -> str:
    """The cache key of one ``continuation_nll`` request (one score; a batch is looked up per request)."""
    return _digest(
        {
            "kind": "nll",
            "spec": spec,
            "messages": [m.model_dump(mode="json") for m in messages],
            "continuation": continuation,
            "scope": CALL_SCOPE.get() if scope is None else scope,
        }
    )


class CallCache:
    """``calls.sqlite``: lookups on the caller's thread, writes batched by one writer thread.

    Usable from several event loops or threads at once (reads take a lock; the pending map is only
    mutated under it). :meth:`close` flushes and joins the writer; a process killed before a queued
    result is committed loses just that result (the call is paid again on the re-run, nothing worse).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._read = self._connect()
        self._read.executescript(SCHEMA)
        self._lock = threading.Lock()
        #: Queued writes, visible to lookups before they commit; None = a queued delete.
        self._pending: dict[str, str | None] = {}
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._hits = self._misses = self._writes = 0
        self._error: BaseException | None = None
        self._writer = threading.Thread(target=self._write_loop, name="synth-call-cache", daemon=True)
        self._writer.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a process kill
        return db

    def __repr__(self) -> str:
        return f"CallCache({str(self.path)!r})"

    # -- raw access -------------------------------------------------------------------------------------
    def get(self, key: str) -> str | None:
        with self._lock:
            if key in self._pending:
                value = self._pending[key]
            else:
                row = self._read.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
                value = row[0] if row else None
            if value is None:
                self._misses += 1
            else:
                self._hits += 1
            return value

    def put(self, key: str, kind: str, value: str) -> None:
        if self._error is not None:  # the writer died (disk full...): the run goes on, uncached
            return
        with self._lock:
            self._pending[key] = value
        self._queue.put((key, kind, value))

    def discard(self, key: str) -> None:
        """Forget ``key`` (a stored reply found unusable): lookups miss from now on, the row is deleted."""
        if self._error is not None:
            return
        with self._lock:
            self._pending[key] = None
        self._queue.put((key, "", None))

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(hits=self._hits, misses=self._misses, writes=self._writes)

    def __len__(self) -> int:
        self.flush()
        with self._lock:
            return int(self._read.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    # -- typed access -----------------------------------------------------------------------------------
    def get_result(
        self, key: str, json_output: bool | type[BaseModel] | None = None
    ) -> CreateResult | None:
        """The stored result marked ``cached=True``, or None; a result that does not validate against
        ``json_output`` is discarded and counts as a miss (see the module doc)."""
        value = self.get(key)
        if value is None:
            return None
        result = CreateResult.model_validate_json(value)
        if not reply_validates(result, json_output):
            self.discard(key)
            with self._lock:
                self._hits, self._misses = self._hits - 1, self._misses + 1
            return None
        return result.model_copy(update={"cached": True})

    def put_result(self, key: str, result: CreateResult) -> None:
        self.put(key, "create", result.model_dump_json())

    def get_score(self, key: str) -> float | None:
        value = self.get(key)
        return None if value is None else float(value)

    def put_score(self, key: str, score: float) -> None:
        self.put(key, "nll", repr(float(score)))

    # -- writer -----------------------------------------------------------------------------------------
    def _write_loop(self) -> None:
        db = self._connect()
        try:
            stop = False
            while not stop:
                item = self._queue.get()
                if isinstance(item, tuple):  # let a burst of finished calls share one wake-up and commit
                    time.sleep(COALESCE_S)
                batch: list[tuple[str, str, str | None]] = []
                flushes: list[threading.Event] = []
                while True:
                    if item is _STOP:
                        stop = True
                    elif isinstance(item, threading.Event):
                        flushes.append(item)
                    else:
                        batch.append(item)
                    if len(batch) >= 512:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._commit(db, batch)
                for event in flushes:
                    event.set()
        finally:
            db.close()

    def _commit(self, db: sqlite3.Connection, batch: list[tuple[str, str, str | None]]) -> None:
        now = time.time()
        insert = "INSERT OR REPLACE INTO calls (key, kind, value, created_at) VALUES (?, ?, ?, ?)"
        try:
            db.execute("BEGIN")
            if all(value is not None for _, _, value in batch):  # the common case: one statement
                db.executemany(insert, [(key, kind, value, now) for key, kind, value in batch])
            else:  # a delete and a later write of the same key must apply in order
                for key, kind, value in batch:
                    if value is None:
                        db.execute("DELETE FROM calls WHERE key = ?", (key,))
                    else:
                        db.execute(insert, (key, kind, value, now))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            self._error = exc
        with self._lock:
            self._writes += len(batch)
            for key, _, value in batch:
                if key in self._pending and self._pending[key] is value:
                    del self._pending[key]

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything queued so far is committed."""
        if not self._writer.is_alive():
            return
        event = threading.Event()
        self._queue.put(event)
        event.wait(timeout)

    def close(self) -> None:
        """Commit what is queued, stop the writer, close the connections (idempotent)."""
        if self._writer.is_alive():
            self._queue.put(_STOP)
            self._writer.join(30.0)
        with self._lock:
            self._read.close()
