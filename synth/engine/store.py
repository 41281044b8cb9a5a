"""The run folder: resolved config, fingerprint, a lock, and the SQLite store of trajectories.

``records.sqlite`` (WAL) holds one row per trajectory id; the primary key is what makes a row's result
exactly-once across crashes and re-runs. A source line (``file:line``) also maps to one record: when a
line is fixed or edited, its row gets a new id, and once that row's record is stored the line's older
record is dropped (:meth:`RunStore.drop_replaced`; a line that failed to parse and now parses is counted
once, never twice). Writes come from one writer (the runner's writer task) in small transactions;
readers (``synth status``, ``synth export``) may read while a run is going.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from synth.engine.logs import redact_urls
from synth.errors import RunFolderError
from synth.trajectory import Trajectory, utc_now

#: One ``records`` row as inserted: id, status, source, error, record JSON, updated_at.
RecordRow = tuple[str, str, str, str | None, str, str]

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    error TEXT,
    record TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_status ON records(status);
"""


class RunLock:
    """An exclusive, process-lifetime lock on a run folder (released by the OS if the process dies)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunFolderError(
                f"run folder {self.path.parent} is in use ({holder}). Wait for that run to finish, "
                "or write to another folder with --out."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {utc_now()}".encode())
        self._fd = fd

    @staticmethod
    def holder(folder: Path) -> str | None:
        """Who holds ``folder``'s run lock (``pid N since T``), or None when no run is writing to it.

        Readers (``synth export``) ask so they can say that what they read is a partial snapshot. The lock
        file is never created here: a folder that is not a run stays untouched."""
        try:
            fd = os.open(folder / "lock", os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.read(fd, 200).decode(errors="replace").strip() or "another process"
        finally:
            os.close(fd)  # closing drops a shared lock taken above
        return None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def open_locked(folder: Path, stack: contextlib.ExitStack) -> RunStore:
    """Take the run lock of ``folder`` (refusing a folder in use) and open its store.

    Both are released when ``stack`` closes, store first: writers (``synth run``, ``synth filter``) hold
    the lock for as long as they hold the store.
    """
    lock = RunLock(folder)
    lock.acquire()
    stack.callback(lock.release)
    store = RunStore(folder)
    stack.callback(store.close)
    return store


class RunStore:
    """Records of one run folder. Not thread-safe: one writer thread or task at a time."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.db_path = self.folder / "records.sqlite"
        # timeout: with --workers N, N processes commit to this file; a writer waits for the others.
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None, timeout=60.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / "checkpoints.sqlite"

    def close(self) -> None:
        self._db.close()

    # --- config and fingerprint -------------------------------------------------------------------
    def read_fingerprint(self) -> str | None:
        path = self.folder / "fingerprint"
        return path.read_text().strip() if path.exists() else None

    def write_config(self, config: dict[str, Any], fingerprint: str) -> None:
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
        (self.folder / "config.yaml").write_text(redact_urls(text))  # e.g. an option value with a URL
        (self.folder / "fingerprint").write_text(fingerprint + "\n")

    def read_config(self) -> dict[str, Any]:
        path = self.folder / "config.yaml"
        if not path.exists():
            raise RunFolderError(
                f"{self.folder} is not a run folder (no config.yaml); run `synth run` first."
            )
        return yaml.safe_load(path.read_text()) or {}

    def reset(self) -> None:
        """Forget every record (``--force`` with a changed configuration)."""
        self._db.execute("DELETE FROM records")
        with contextlib.suppress(FileNotFoundError):
            self.checkpoint_path.unlink()

    # --- records ----------------------------------------------------------------------------------
    def write(self, trajectories: Iterable[Trajectory]) -> None:
        """Insert or replace records in one transaction (a retried failed row replaces its record)."""
        self.write_rows(self.rows(trajectories))

    @staticmethod
    def rows(trajectories: Iterable[Trajectory]) -> list[RecordRow]:
        """Serialised records for :meth:`write_rows` (JSON, built before the transaction starts)."""
        return [(t.id, t.status, t.source, t.error, t.model_dump_json(), utc_now()) for t in trajectories]

    def write_rows(self, rows: list[RecordRow]) -> None:
        """Insert or replace serialised records (:meth:`rows`) in one transaction."""
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO records (id, status, source, error, record, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    def merge(self, records: Iterable[tuple[str, str, str, str | None, str]]) -> list[str]:
        """Add ``(id, status, source, error, record JSON)`` rows whose id is not stored yet, in one
        transaction; returns the ids added. Idempotent: merging a Ray shard twice adds nothing, and a
        record already here (filtered since, or retried) is never overwritten by an older copy."""
        added: list[str] = []
        now = utc_now()
        with self._transaction():
            for tid, status, source, error, record in records:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO records (id, status, source, error, record, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (tid, status, source, error, record, now),
                )
                if cursor.rowcount == 1:
                    added.append(tid)
        return added

    def stored_ids(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT id FROM records")}

    def update(self, trajectories: Iterable[Trajectory]) -> None:
        """Rewrite existing records in place (keeps their order: filters update while iterating)."""
        rows = [(t.status, t.error, t.model_dump_json(), utc_now(), t.id) for t in trajectories]
        with self._transaction():
            self._db.executemany(
                "UPDATE records SET status = ?, error = ?, record = ?, updated_at = ? WHERE id = ?", rows
            )

    def status_of(self, trajectory_id: str) -> str | None:
        row = self._db.execute("SELECT status FROM records WHERE id = ?", (trajectory_id,)).fetchone()
        return row[0] if row else None

    def finished_ids(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT id FROM records WHERE status != 'failed'")}

    def failed_ids(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT id FROM records WHERE status = 'failed'")}

    def drop_replaced(self, lines: Mapping[str, str], *, failed_only: bool = False) -> int:
        """Drop the records that a line's current row replaced; returns how many.

        ``lines`` maps each source line read (``file:line``) to the id of the row it holds now. A record
        of that line with another id whose content is nowhere in ``lines`` was made from the line's old
        content (a line fixed or edited since): once the current row has a record, it is dropped. A row
        that only moved (a line inserted above it) keeps its record. ``failed_only``: a partial read
        (``--limit``) cannot know that the old content is gone, so only failed records are dropped.
        """
        current = set(lines.values())
        stored = self.stored_ids()
        stale = [
            (rid,)
            for rid, source, status in self._db.execute(
                "SELECT id, source, status FROM records WHERE source != ''"
            )
            if source in lines
            and rid not in current
            and lines[source] in stored
            and (status == "failed" or not failed_only)
        ]
        if stale:
            with self._transaction():
                self._db.executemany("DELETE FROM records WHERE id = ?", stale)
        return len(stale)

    def failed_sources(self) -> set[str]:
        """Source lines whose record failed: ``--retry-failed`` re-runs them even when the line changed."""
        query = "SELECT source FROM records WHERE status = 'failed' AND source != ''"
        return {r[0] for r in self._db.execute(query)}

    def counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT status, COUNT(*) FROM records GROUP BY status").fetchall())

    def errors(self, limit: int = 20) -> list[tuple[str, str, str]]:
        return list(
            self._db.execute(
                "SELECT id, source, error FROM records WHERE status = 'failed' ORDER BY updated_at LIMIT ?",
                (limit,),
            )
        )

    def iter_records(self, status: str | None = None, batch: int = 500) -> Iterator[Trajectory]:
        """Stream records in insertion order without loading them all (exports of 100k rows)."""
        query = "SELECT rowid, record FROM records WHERE rowid > ?"
        args: tuple[Any, ...] = ()
        if status:
            query += " AND status = ?"
            args = (status,)
        last = -1
        while True:
            rows = self._db.execute(query + " ORDER BY rowid LIMIT ?", (last, *args, batch)).fetchall()
            if not rows:
                return
            for rowid, record in rows:
                last = rowid
                yield Trajectory.model_validate(json.loads(record))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
