"""Ray shards: one parquet file per finished block of input rows, a manifest of merged blocks, the merge.

Layout under the run folder (which on a cluster is shared storage, mounted at the same path everywhere)::

    shards/
      manifest.jsonl                       one line per block merged into records.sqlite
      block-000000000-000000100.parquet    the trajectories of input rows [0, 100)
      block-000000100-000000200/           a block in progress: records.sqlite, checkpoints.sqlite,
                                           calls.sqlite, lock - the files of a run folder, for one block

A block is named by its row range, so a changed ``--ray-block-rows`` or ``--limit`` never mistakes one
block for another. A shard is written whole (temporary file, then rename): it exists only once its block is
complete. The driver alone merges shards into ``records.sqlite`` and then appends to the manifest; a kill
between the two only makes the next run merge that shard again, which adds nothing (primary key).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from synth.engine.store import RunStore
from synth.errors import RunFolderError
from synth.trajectory import Trajectory, utc_now

SHARDS_DIR = "shards"
MANIFEST_FILE = "manifest.jsonl"

#: One row per trajectory; ``record`` is the trajectory JSON, exactly as records.sqlite stores it.
SHARD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("status", pa.string()),
        ("source", pa.string()),
        ("error", pa.string()),
        ("record", pa.string()),
    ]
)


def block_name(start: int, stop: int) -> str:
    """``block-START-STOP``: input rows [START, STOP) (0-based, counting every row, blank lines excluded)."""
    return f"block-{start:09d}-{stop:09d}"


def shard_path(shards: Path, name: str) -> Path:
    return shards / f"{name}.parquet"


def write_shard(work: RunStore, path: Path) -> int:
    """Write every record of a finished block's work store as the block's shard; returns the row count."""
    records = list(work.iter_records())
    table = pa.table(
        {
            "id": [t.id for t in records],
            "status": [t.status for t in records],
            "source": [t.source for t in records],
            "error": [t.error for t in records],
            "record": [t.model_dump_json() for t in records],
        },
        schema=SHARD_SCHEMA,
    )
    temporary = path.with_name(path.name + ".tmp")
    pq.write_table(table, temporary)
    with temporary.open("rb") as handle:  # durable before it becomes visible under its name
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return len(records)


def read_shard(path: Path) -> Iterator[tuple[str, str, str, str | None, str]]:
    """The shard's rows as ``(id, status, source, error, record JSON)``."""
    try:
        table = pq.read_table(path, schema=SHARD_SCHEMA)
    except (OSError, pa.ArrowInvalid) as exc:
        raise RunFolderError(
            f"shard {path} is unreadable ({exc}); delete it and re-run the same command to redo its block"
        ) from exc
    for row in table.to_pylist():
        yield row["id"], row["status"], row["source"], row["error"], row["record"]


def merge_shard(store: RunStore, path: Path) -> list[Trajectory]:
    """Add the shard's records that the store lacks (by trajectory id); returns the records added."""
    rows = list(read_shard(path))
    added = set(store.merge(rows))
    return [Trajectory.model_validate_json(row[4]) for row in rows if row[0] in added]


class Manifest:
    """``shards/manifest.jsonl``: blocks whose shards are merged into the store (the driver appends)."""

    def __init__(self, shards: Path) -> None:
        self.path = shards / MANIFEST_FILE

    def blocks(self) -> set[str]:
        """Merged blocks. A line a kill cut short is ignored: its block is only checked again (its shard
        exists, so nothing runs) and merging it again adds nothing."""
        if not self.path.exists():
            return set()
        names: set[str] = set()
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                names.add(str(json.loads(line)["block"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
        return names

    def add(self, block: str, **facts: Any) -> None:
        """Record ``block`` as merged; flushed and fsynced, so a later kill cannot lose the entry."""
        entry = json.dumps({"block": block, **facts, "merged_at": utc_now()})
        with self.path.open("a+", encoding="utf-8") as handle:
            handle.seek(0, os.SEEK_END)
            cut_short = handle.tell() > 0 and not self.path.read_bytes().endswith(b"\n")
            handle.write(("\n" if cut_short else "") + entry + "\n")
            handle.flush()
            os.fsync(handle.fileno())
