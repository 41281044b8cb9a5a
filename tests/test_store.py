"""The run folder: exactly-once records by primary key, streaming reads, the lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.engine.store import RunLock, RunStore
from synth.errors import RunFolderError
from synth.trajectory import Trajectory


def test_records_are_keyed_by_id_and_replace_on_retry(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.write([Trajectory(id=f"t{i}", graph="g", seed={"i": i}) for i in range(1200)])
    store.write([Trajectory(id="t5", graph="g", seed={}, status="failed", error="boom")])
    assert store.counts() == {"ok": 1199, "failed": 1}
    assert store.failed_ids() == {"t5"}
    assert len(store.finished_ids()) == 1199
    assert sum(1 for _ in store.iter_records(batch=100)) == 1200
    store.write([Trajectory(id="t5", graph="g", seed={})])
    assert store.counts() == {"ok": 1200}
    store.close()


def test_second_lock_on_a_folder_is_refused_until_released(tmp_path: Path) -> None:
    first = RunLock(tmp_path)
    first.acquire()
    with pytest.raises(RunFolderError, match="is in use"):
        RunLock(tmp_path).acquire()
    first.release()
    second = RunLock(tmp_path)
    second.acquire()
    second.release()
