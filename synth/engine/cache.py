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
(microseconds; a miss costs far less than the call it precedes). Writes pend for up to
:data:`COALESCE_S` and are committed together in one transaction on the caller's thread (a WAL commit
does not wait for the disk); a result is visible to lookups from the moment it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
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

#: How long results accumulate before one commit: bounds what a kill can lose (those calls are paid again).
COALESCE_S = 0.05
#: Pending writes that trigger a commit at once, whatever their age.
MAX_PENDING = 512


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
    """``calls.sqlite``: lookups and batched writes on the caller's thread (see :meth:`put`).

    Usable from several event loops or threads at once (one lock guards the connections and the pending
    writes). :meth:`close` commits what is pending; a process killed before a pending result is committed
    loses just that result (the call is paid again on the re-run, nothing worse).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._connect()
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()
        #: Writes not yet committed, visible to lookups; None = a pending delete. Insertion order = order.
        self._pending: dict[str, tuple[str, str | None]] = {}
        self._pending_since = 0.0  # monotonic time of the oldest pending write
        self._hits = self._misses = self._writes = 0
        self._error: BaseException | None = None
        self._closed = False

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
                value = self._pending[key][1]
            else:
                row = self._db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
                value = row[0] if row else None
            if value is None:
                self._misses += 1
            else:
                self._hits += 1
            return value

    def put(self, key: str, kind: str, value: str) -> None:
        """Store ``value`` for ``key``: visible to lookups at once, committed with the writes of the next
        :data:`COALESCE_S` in one transaction, on this thread (see :meth:`_queue`)."""
        self._queue(key, kind, value)

    def discard(self, key: str) -> None:
        """Forget ``key`` (a stored reply found unusable): lookups miss from now on, the row is deleted."""
        self._queue(key, "", None)

    def _queue(self, key: str, kind: str, value: str | None) -> None:
        """Pend one write; commit the pending ones when the oldest is :data:`COALESCE_S` old, from a timer
        on the running event loop or from this call, whichever comes first.

        Why not a writer thread: SQLite releases the GIL on every statement step, and a thread taking it
        back from a busy event loop costs both threads context switches — measured at C = 64, 200 ms:
        ~5 switches and ~0.15 ms of CPU per call. A WAL commit with ``synchronous=NORMAL`` does not wait
        for the disk: one per :data:`COALESCE_S` holds the loop a fraction of a percent of the time."""
        if self._error is not None or self._closed:  # the disk failed (full...): the run goes on, uncached
            return
        with self._lock:
            now = time.monotonic()
            if not self._pending:
                self._pending_since = now
                _call_later(COALESCE_S, self.flush)
            self._pending.pop(key, None)  # a re-write moves to the end: it applies after earlier ones
            self._pending[key] = (kind, value)
            if now - self._pending_since >= COALESCE_S or len(self._pending) >= MAX_PENDING:
                self.flush()

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(hits=self._hits, misses=self._misses, writes=self._writes)

    def __len__(self) -> int:
        self.flush()
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    # -- typed access -----------------------------------------------------------------------------------
    def get_result(self, key: str, json_output: bool | type[BaseModel] | None = None) -> CreateResult | None:
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

    # -- writes -----------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Commit every pending write now, in one transaction."""
        with self._lock:
            if not self._pending or self._error is not None or self._closed:
                return
            batch, self._pending = self._pending, {}
            now = time.time()
            insert = "INSERT OR REPLACE INTO calls (key, kind, value, created_at) VALUES (?, ?, ?, ?)"
            try:
                self._db.execute("BEGIN")
                if all(value is not None for _, value in batch.values()):  # the common case: one statement
                    self._db.executemany(insert, [(k, kind, v, now) for k, (kind, v) in batch.items()])
                else:  # deletes and writes in the order they were made
                    for key, (kind, value) in batch.items():
                        if value is None:
                            self._db.execute("DELETE FROM calls WHERE key = ?", (key,))
                        else:
                            self._db.execute(insert, (key, kind, value, now))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                self._error = exc
                self._pending = batch  # still served to this process's lookups
                return
            self._writes += len(batch)

    def close(self) -> None:
        """Commit what is pending and close the connection (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self.flush()
            self._closed = True
            self._db.close()


def _call_later(delay: float, callback: Any) -> None:
    """``callback`` in ``delay`` seconds on this thread's running event loop; nothing without one (the
    next write or :meth:`CallCache.close` commits then)."""
    with contextlib.suppress(RuntimeError):
        asyncio.get_running_loop().call_later(delay, callback)
