"""``synth run --executor ray`` on a local Ray cluster that the tests start (2 CPUs, no dashboard).

The graph is ``synth.testing.graphs:CHAIN`` (draft, then critic + reviser) against the loopback server with
the deterministic echo responder, so a row's result does not depend on which executor or block ran it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")

from synth.engine.inputs import read_rows  # noqa: E402
from synth.engine.session import RunRequest, run_session  # noqa: E402
from synth.engine.store import RunStore  # noqa: E402
from synth.errors import SynthError  # noqa: E402
from synth.executors.ray_input import iter_blocks  # noqa: E402
from synth.executors.shards import Manifest, merge_shard, read_shard  # noqa: E402
from synth.testing.graphs import echo_responder  # noqa: E402
from synth.testing.openai_server import OpenAIServer  # noqa: E402
from synth.testing.replies import Reply  # noqa: E402

GRAPH = "synth.testing.graphs:CHAIN"


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray cluster for this module; yields its address (for drivers in other processes)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


class Counting:
    """``echo_responder`` that counts calls per (seed text, role)."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> Reply | str:
        prompt = next(m["content"] for m in request["messages"] if m["role"] == "user")
        role = request["messages"][0]["content"].split("You are the ", 1)[1].split(".", 1)[0]
        with self._lock:
            self.calls[prompt.removeprefix("Text: ").split("(")[-1].rstrip(")"), role] += 1
        return echo_responder(request)


def request(url: str, seeds: Path, out: Path, **changes: Any) -> RunRequest:
    return RunRequest(graph=GRAPH, input=seeds, out=out, models={"default": f"openai:m@{url}"}, **changes)


def outcome(folder: Path) -> dict[str, Any]:
    """What must not depend on the executor: ids, status, source, error, result, steps (no timestamps)."""
    store = RunStore(folder)
    try:
        return {
            r.id: (r.status, r.source, r.error, r.result, [(s.role, s.node, s.output, s.ok) for s in r.steps])
            for r in store.iter_records()
        }
    finally:
        store.close()


def shard_ids(folder: Path) -> list[str]:
    return [row[0] for path in sorted((folder / "shards").glob("*.parquet")) for row in read_shard(path)]


def mixed_seeds(path: Path) -> Path:
    """50 rows: duplicates in different blocks (distinct ids, as in the asyncio run), a row with its own id,
    a broken line, a row without the required field, and a blank line (line numbers must still match)."""
    lines = [json.dumps({"text": f"row {i}"}) for i in range(45)]
    lines[20] = lines[3]  # the same content in blocks 0 and 1
    lines[40] = lines[3]  # and in block 2
    lines[7] = json.dumps({"id": "own-7", "text": "row 7"})
    lines[11] = '{"text": "broken'
    lines[30] = json.dumps({"txt": "no text field"})
    lines.insert(25, "")
    lines += [json.dumps({"text": f"tail {i}"}) for i in range(5)]
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_ray_rows_equal_the_asyncio_rows(tmp_path: Path, cluster: str) -> None:
    seeds = mixed_seeds(tmp_path / "seeds.jsonl")
    script = Counting()
    with OpenAIServer(script, latency=0.01) as server:
        asyncio_summary, _ = await run_session(request(server.base_url, seeds, tmp_path / "asyncio"))
        ray_summary, folder = await run_session(
            request(
                server.base_url, seeds, tmp_path / "ray", executor="ray", ray_block_rows=16, concurrency=4
            )
        )
        calls = sum(script.calls.values())
        expected = outcome(tmp_path / "asyncio")
        assert len(expected) == 50 and asyncio_summary.counts == {"ok": 48, "failed": 2}
        assert outcome(folder) == expected
        assert ray_summary.counts == asyncio_summary.counts
        tokens = ("prompt_tokens", "completion_tokens", "calls")
        assert ray_summary.usage.model_dump(include=set(tokens)) == asyncio_summary.usage.model_dump(
            include=set(tokens)
        )
        assert next(iter(ray_summary.clients.values()))["calls"] == calls // 2  # half of them were Ray's
        # One shard per block of 16 rows, each merged once; no id in two shards; no block folder left.
        names = sorted(p.stem for p in (folder / "shards").glob("*.parquet"))
        assert names == [f"block-{a:09d}-{b:09d}" for a, b in ((0, 16), (16, 32), (32, 48), (48, 50))]
        assert Manifest(folder / "shards").blocks() == set(names)
        assert sorted(shard_ids(folder)) == sorted(expected)
        assert not [p for p in (folder / "shards").iterdir() if p.is_dir()]

        # Re-running skips every block without a call; the asyncio executor sees the merged records.
        again, _ = await run_session(
            request(server.base_url, seeds, folder, executor="ray", ray_block_rows=16)
        )
        assert again.written == 0 and again.skipped == 50
        mixed, _ = await run_session(request(server.base_url, seeds, folder))
        assert mixed.written == 0 and mixed.skipped == 50
        assert sum(script.calls.values()) == calls and outcome(folder) == expected


async def test_retry_failed_is_refused_on_ray(tmp_path: Path) -> None:
    with pytest.raises(SynthError, match="--retry-failed runs on the asyncio executor"):
        await run_session(
            request("http://127.0.0.1:9/v1", tmp_path, tmp_path, executor="ray", retry_failed=True)
        )


def test_parquet_and_datasets_inputs_read_like_the_asyncio_reader(tmp_path: Path, cluster: str) -> None:
    import datasets

    table = pa.table({"text": [f"row {i}" for i in range(23)], "n": list(range(23))})
    pq.write_table(table, tmp_path / "seeds.parquet")
    blocks = list(iter_blocks(tmp_path / "seeds.parquet", 10))
    assert [(start, len(rows)) for start, rows in blocks] == [(0, 10), (10, 10), (20, 3)]
    assert [r for _, rows in blocks for r in rows] == list(read_rows(tmp_path / "seeds.parquet"))

    folder = tmp_path / "seeds-dataset"
    datasets.Dataset.from_dict(table.to_pydict()).save_to_disk(str(folder))
    rows = [r for _, rows in iter_blocks(folder, 10, limit=15) for r in rows]
    assert [r.data for r in rows] == table.slice(0, 15).to_pylist()
    assert rows[-1].source == f"{folder}:row 15"


def test_merging_a_shard_twice_adds_nothing_and_a_cut_manifest_line_is_ignored(tmp_path: Path) -> None:
    from synth.executors.shards import write_shard
    from synth.trajectory import Trajectory

    work = RunStore(tmp_path / "work")
    work.write([Trajectory(id=f"t{i}", graph="g", seed={"text": str(i)}) for i in range(3)])
    shard = tmp_path / "block.parquet"
    assert write_shard(work, shard) == 3
    work.close()
    store = RunStore(tmp_path / "run")
    store.write([Trajectory(id="t1", graph="g", seed={}, status="filtered", filter_reason="kept")])
    assert [t.id for t in merge_shard(store, shard)] == ["t0", "t2"]
    assert merge_shard(store, shard) == []
    assert store.status_of("t1") == "filtered"  # a merge never overwrites a stored record
    store.close()

    manifest = Manifest(tmp_path)
    manifest.add("block-a", rows=3)
    manifest.path.write_text(manifest.path.read_text() + '{"block": "block-b", "ro')  # killed mid-append
    assert manifest.blocks() == {"block-a"}
    manifest.add("block-c", rows=3)
    assert manifest.blocks() == {"block-a", "block-c"}


def test_a_killed_ray_run_resumes_to_the_uninterrupted_result(tmp_path: Path, cluster: str) -> None:
    """SIGKILL the driver (a subprocess on the test's cluster) after some blocks merged, re-run: the
    records equal an uninterrupted run's, no id twice anywhere, and rows that a half-done block had stored
    are not run again."""
    rows = 60
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(rows)))
    script = Counting()
    with OpenAIServer(script, latency=0.1) as server:
        reference = tmp_path / "reference"
        run = tmp_path / "run"
        import asyncio

        asyncio.run(run_session(request(server.base_url, seeds, reference, concurrency=16)))
        script.calls.clear()
        command = [
            sys.executable, "-m", "synth", "run", GRAPH, "--input", str(seeds), "--out", str(run),
            "--model", f"openai:m@{server.base_url}", "--executor", "ray", "--address", cluster,
            "--ray-block-rows", "5", "--concurrency", "2",
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            # Some blocks merged, and one cut short: it has stored rows but no shard yet.
            _wait_for(lambda: _mid_run(run / "shards") or process.poll() is not None)
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            assert process.stderr is not None
            stderr = process.stderr.read().decode(errors="replace")
            process.stderr.close()
        half_done = _work_records(run / "shards")  # rows stored by the blocks cut short
        assert 2 <= len(Manifest(run / "shards").blocks()) < rows // 5, f"not mid-run: {stderr[-2000:]}"
        assert half_done
        _wait_for(lambda: _quiet(script, seconds=1.0))  # Ray has ended the dead driver's actors

        asyncio.run(run_session(request(server.base_url, seeds, run, executor="ray", ray_block_rows=5)))
        assert outcome(run) == outcome(reference)
        ids = shard_ids(run)
        assert len(ids) == len(set(ids)) == rows  # one shard row per trajectory, none twice
        assert len(Manifest(run / "shards").blocks()) == rows // 5
        assert all(script.calls[text, "drafter"] == 1 for text in half_done)
        assert all(script.calls[text, "reviser"] >= 1 for text in half_done)


def _work_records(shards: Path) -> set[str]:
    """Seed texts of the records in the block work folders (read-only; no shard written for them yet)."""
    texts: set[str] = set()
    for db_path in shards.glob("block-*/records.sqlite"):
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            texts |= {json.loads(r[0])["seed"]["text"] for r in db.execute("SELECT record FROM records")}
        except sqlite3.OperationalError:  # created, no table yet
            pass
        finally:
            db.close()
    return texts


def _mid_run(shards: Path) -> bool:
    return len(Manifest(shards).blocks()) >= 2 and bool(_work_records(shards))


def _quiet(script: Counting, seconds: float) -> bool:
    """No model call for ``seconds`` (the server answers in 0.1 s: a live actor calls far more often)."""
    before = sum(script.calls.values())
    time.sleep(seconds)
    return sum(script.calls.values()) == before


def _wait_for(condition: Any, timeout: float = 120.0) -> None:
    """Poll a cross-process state (nothing to await) until true or the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
