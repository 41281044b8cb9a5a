"""``synth run --workers N``: worker processes share one run folder, exactly once, with resume.

The same graphs and loopback server as the one-process tests (``test_resume.py``, ``test_chaos.py``):
records must be identical to a one-process run's, the call limit must hold across workers, a SIGKILL of
one worker must lose nothing that a re-run does not finish, and no row may ever be stored twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from synth.engine.logs import read_events
from synth.engine.session import RunRequest, resolve_workers, run_session
from synth.engine.store import RunStore
from synth.engine.workers import RowClaims, auto_workers, merge_client_stats, share
from synth.errors import SynthError
from synth.testing.graphs import echo_responder
from synth.testing.openai_server import OpenAIServer
from synth.testing.replies import Reply

ROWS = 40


def seeds(tmp_path: Path, rows: int = ROWS, *, duplicates: bool = False) -> Path:
    path = tmp_path / "seeds.jsonl"
    texts = [f"row {i % 7 if duplicates else i}" for i in range(rows)]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def request(server: OpenAIServer, path: Path, out: Path, **changes: Any) -> RunRequest:
    fields: dict[str, Any] = {
        "graph": "synth.testing.graphs:CHAIN",
        "input": path,
        "out": out,
        "models": {"default": f"openai:m@{server.base_url}"},
        "concurrency": 8,
        "max_calls": 6,
        **changes,
    }
    return RunRequest(**fields)


def outcome(folder: Path) -> dict[str, Any]:
    store = RunStore(folder)
    try:
        return {
            r.id: (r.status, r.seed, r.result, [(s.role, s.node, s.output, s.ok) for s in r.steps])
            for r in store.iter_records()
        }
    finally:
        store.close()


def stored_ids(folder: Path) -> list[str]:
    db = sqlite3.connect(folder / "records.sqlite")
    try:
        return [row[0] for row in db.execute("SELECT id FROM records")]
    finally:
        db.close()


def test_two_workers_write_what_one_process_writes_within_the_global_call_limit(tmp_path: Path) -> None:
    path = seeds(tmp_path, duplicates=True)  # identical rows: ids must match a one-process run's
    with OpenAIServer(echo_responder, latency=0.02) as server:
        one, _ = asyncio.run(run_session(request(server, path, tmp_path / "one", workers=1)))
        server.reset_counters()
        two, folder = asyncio.run(run_session(request(server, path, tmp_path / "two", workers=2)))
        assert server.stats()["max_in_flight"] <= 6  # --max-calls is global: 3 + 3
    assert two.counts == one.counts and two.counts["ok"] == ROWS
    assert outcome(folder) == outcome(tmp_path / "one")
    starts = [e for e in read_events(folder / "log.jsonl") if e["event"] == "worker_start"]
    assert sorted(e["index"] for e in starts) == [0, 1] and len({e["pid"] for e in starts}) == 2
    assert all(e["pid"] != os.getpid() for e in starts)
    assert next(iter(two.clients.values()))["ok"] == 3 * ROWS  # merged client stats of both workers
    again, _ = asyncio.run(run_session(request(server, path, folder, workers=2)))
    assert again.written == 0 and again.skipped == ROWS


def test_rows_go_to_the_worker_with_a_free_call_slot(tmp_path: Path) -> None:
    """16 rows, 16 call slots over two workers (8 + 8), 32 row slots (16 + 16): a worker claims rows for its
    free call slots plus a quarter of its slots (2) waiting, so at least 14 calls start at once. Claiming on
    row slots alone, the first worker took all 16 rows and ran them 8 at a time while the second worker's
    slots sat idle: two rounds of the server's latency instead of one."""
    path = seeds(tmp_path, rows=16)
    with OpenAIServer(echo_responder, latency=1.0) as server:
        req = request(server, path, tmp_path / "run", graph="synth.testing.graphs:ECHO", workers=2)
        summary, _ = asyncio.run(run_session(req.model_copy(update={"concurrency": 32, "max_calls": 16})))
        assert summary.counts["ok"] == 16
        assert server.stats()["max_in_flight"] >= 14


SLOW_TOOL = """
import asyncio, os, time
from synth.graph import SynthGraph, chain
from synth.testing.graphs import ECHO_ROLE, TextSeed, TextState, _node, _to_trajectory


async def tool(state):
    started = time.monotonic()
    await asyncio.sleep(0.5)  # a slow tool: the row holds no call slot meanwhile
    with open(os.environ["SPANS"], "a") as spans:
        spans.write(f"{started} {time.monotonic()}\\n")
    return {}


GRAPH = SynthGraph(
    name="slow-tool", description="a tool, then one call", version="1", seed_model=TextSeed,
    roles=(ECHO_ROLE,), to_trajectory=_to_trajectory, exports={},
    build=lambda models: chain(TextState, {"tool": tool, "echo": _node((ECHO_ROLE,), models)}),
)
"""


def test_rows_busy_outside_model_calls_do_not_hold_back_claims(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows in a tool hold no call slot: a worker keeps claiming them up to its row slots. Counted as
    waiting for a call, 16 rows would run 4 at a time (2 + 2 call slots), each first in a 0.5 s tool."""
    graph = tmp_path / "slow_tool.py"
    graph.write_text(SLOW_TOOL)
    spans = tmp_path / "spans.txt"
    monkeypatch.setenv("SPANS", str(spans))
    with OpenAIServer(echo_responder, latency=0.01) as server:
        req = request(server, seeds(tmp_path, rows=16), tmp_path / "run", graph=f"{graph}:GRAPH", workers=2)
        summary, _ = asyncio.run(run_session(req.model_copy(update={"concurrency": 32, "max_calls": 4})))
    assert summary.counts["ok"] == 16
    intervals = [tuple(map(float, line.split())) for line in spans.read_text().splitlines()]
    most = max(sum(1 for a, b in intervals if a <= start < b) for start, _ in intervals)
    assert most >= 12, intervals  # rows in the tool at once (all 16 when both workers start together)


def test_failures_under_faults_are_rows_too_with_two_workers(tmp_path: Path) -> None:
    """A shorter chaos run (test_chaos.py) split between two workers: every row exactly once."""

    def responder(req: dict[str, Any]) -> Reply | str:
        if "DOOMED" in req["messages"][1]["content"]:
            return Reply(status=503, error="overloaded")
        return echo_responder(req)

    texts = ["row 5 DOOMED" if i == 5 else f"row {i}" for i in range(120)]
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    with OpenAIServer(responder) as server:
        server.set_faults(
            error_500=0.1, rate_limit_429=0.05, malformed=0.05, reset=0.02, retry_after_s=0.02, seed=3
        )
        changes = {"graph": "synth.testing.graphs:ECHO", "retries": 4, "backoff": 0.01, "workers": 2}
        summary, folder = asyncio.run(run_session(request(server, path, tmp_path / "run", **changes)))
    ids = stored_ids(folder)
    assert len(ids) == len(set(ids)) == 120 == summary.written
    records = {r.seed["text"]: r for r in RunStore(folder).iter_records()}
    assert records["row 5 DOOMED"].status == "failed"
    assert all(r.result["answer"] == f"echo({t})" for t, r in records.items() if r.status == "ok")
    failed = [e["id"] for e in read_events(folder / "log.jsonl") if e["event"] == "row_failed"]
    assert sorted(failed) == sorted(r.id for r in records.values() if r.status == "failed")


def test_a_killed_worker_loses_nothing_a_rerun_does_not_finish(tmp_path: Path) -> None:
    rows = 60
    path = seeds(tmp_path, rows)
    with OpenAIServer(echo_responder, latency=0.05) as server:
        reference, _ = asyncio.run(run_session(request(server, path, tmp_path / "reference", workers=1)))
        assert reference.counts["ok"] == rows
        out = tmp_path / "run"
        cmd = [
            sys.executable, "-m", "synth", "run", "synth.testing.graphs:CHAIN", "--input", str(path),
            "--out", str(out), "--model", f"openai:m@{server.base_url}", "--concurrency", "4",
            "--max-calls", "4", "--workers", "2",
        ]  # fmt: skip
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(lambda: len(_stored(out)) >= 6, what="the first records")
            workers = {
                e["index"]: e["pid"] for e in read_events(out / "log.jsonl") if e["event"] == "worker_start"
            }
            os.kill(workers[0], signal.SIGKILL)
            _, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode != 0
        assert "worker 0" in err and "SIGKILL" in err and "re-run" in err, err
        interrupted = _stored(out)
        assert 0 < len(interrupted) < rows  # worker 1 finished its half; worker 0's rows are missing
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
    ids = stored_ids(out)
    assert len(ids) == len(set(ids)) == rows
    assert outcome(out) == outcome(tmp_path / "reference")
    db = sqlite3.connect(out / "checkpoints.sqlite")
    assert db.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0] == 0  # every finished row's are gone
    db.close()


def _stored(folder: Path) -> list[str]:
    if not (folder / "records.sqlite").exists():
        return []
    try:
        return stored_ids(folder)
    except sqlite3.OperationalError:  # created, no table yet
        return []


def _wait_for(condition: Any, *, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# -- the rules ---------------------------------------------------------------------------------------------
def test_the_call_limit_is_split_evenly_and_adds_up() -> None:
    for total in (1, 5, 64, 127):
        for n in (1, 2, 3, 4):
            parts = [share(total, n, i) for i in range(n)]
            assert sum(parts) == total and max(parts) - min(parts) <= 1


def _claim_in_child(claims: RowClaims, rows: int, delay: float, report: int) -> None:  # pragma: no cover
    """A forked worker: ask for every row in order, "run" each claimed one for ``delay`` s, report them."""
    mine = []
    for index in range(rows):
        if claims.owns(index):
            mine.append(index)
            time.sleep(delay)
    os.write(report, json.dumps(mine).encode())
    os._exit(0)


def _claims_of(delays: list[float], rows: int) -> list[list[int]]:
    claims = RowClaims()
    children = []
    for delay in delays:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            _claim_in_child(claims, rows, delay, write)
        os.close(write)
        children.append((pid, read))
    got = []
    for pid, read in children:
        with os.fdopen(read, "rb") as pipe:
            got.append(json.loads(pipe.read()))
        os.waitpid(pid, 0)
    claims.close()
    return got


def test_row_claims_are_disjoint_complete_and_follow_each_workers_pace() -> None:
    """Every row to exactly one worker; a worker whose rows are slow takes fewer (no idle tail at the end)."""
    fast, slow = _claims_of([0.0005, 0.005], 300)
    assert sorted(fast + slow) == list(range(300))
    assert fast == sorted(fast) and slow == sorted(slow)
    assert len(slow) < len(fast) / 3  # a fixed split would have given each 150


def test_a_killed_worker_holding_the_claim_lock_blocks_no_one() -> None:
    """The lock is a POSIX record lock: the OS releases it with a dead process (a SIGKILL at any moment)."""
    import fcntl

    claims = RowClaims()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child takes the lock and hangs until killed
        fcntl.lockf(claims._fd, fcntl.LOCK_EX)
        time.sleep(60)
        os._exit(0)
    time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    fcntl.lockf(claims._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises (rather than hangs) if still held
    fcntl.lockf(claims._fd, fcntl.LOCK_UN)
    assert claims.owns(0) and claims.owns(1)
    claims.close()


def test_automatic_workers_only_when_there_is_work_to_share() -> None:
    openai_ = {"default": "openai:m@http://127.0.0.1:8000/v1"}
    assert auto_workers(openai_, 256, 100_000, cores=16) == 4
    assert auto_workers(openai_, 64, 100_000, cores=2) == 2
    assert auto_workers(openai_, 64, None, cores=8) == 2  # 32 call slots per worker at least
    assert auto_workers(openai_, 32, 100_000, cores=8) == 1
    assert auto_workers(openai_, 256, 1500, cores=8) == 1  # a small input: start-up would dominate
    assert auto_workers({**openai_, "judge": "local:gemma-3-270m"}, 256, None, cores=8) == 1


def test_workers_refuse_options_they_cannot_serve(tmp_path: Path) -> None:
    base = {"graph": "g", "input": tmp_path / "in.jsonl", "out": tmp_path / "o", "max_calls": 4}
    specs = {"default": "openai:m"}
    with pytest.raises(SynthError, match="--trace"):
        resolve_workers(RunRequest(**base, workers=2, trace=True), specs)
    with pytest.raises(SynthError, match="--ray-actors"):
        resolve_workers(RunRequest(**base, workers=2, executor="ray"), specs)
    with pytest.raises(SynthError, match="call slot"):
        resolve_workers(RunRequest(**base, workers=8), specs)
    assert resolve_workers(RunRequest(**base, trace=True), specs) == 1


def test_client_stats_of_workers_merge() -> None:
    one = {"calls": 2, "ok": 2, "errors": {"RateLimitError": 1}, "mean_latency_s": 1.0, "max_in_flight": 3}
    two = {"calls": 4, "ok": 2, "errors": {"TimeoutError": 2}, "mean_latency_s": 2.0, "max_in_flight": 2}
    merged = merge_client_stats(merge_client_stats(None, one), two)
    assert merged["calls"] == 6 and merged["mean_latency_s"] == 1.5
    assert merged["errors"] == {"RateLimitError": 1, "TimeoutError": 2}


def test_adaptive_limits_stay_within_each_workers_share_under_429s(tmp_path: Path) -> None:
    path = seeds(tmp_path)
    with OpenAIServer(echo_responder, latency=0.01) as server:
        server.set_faults(rate_limit_429=0.2, retry_after_s=0.01, seed=5)
        changes = {"graph": "synth.testing.graphs:ECHO", "adaptive": True, "workers": 2, "backoff": 0.01}
        summary, _ = asyncio.run(run_session(request(server, path, tmp_path / "run", **changes)))
        assert server.stats()["max_in_flight"] <= 6
    assert summary.counts["ok"] == ROWS
    client = next(iter(summary.clients.values()))
    assert client["errors"].get("RateLimitError", 0) > 0  # the AIMD limits saw the 429s
    assert client["concurrency_limit"] <= 6  # the two workers' limits, each within its share of 3


def test_checkpoints_left_by_a_kill_after_the_record_commit_are_dropped_by_the_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records and checkpoints are two databases: a kill between a record's commit and the deletion of its
    checkpoints leaves them behind, and the re-run skips the row. The re-run deletes them at start."""
    from synth.engine.checkpoints import InlineSqliteSaver

    path = seeds(tmp_path, 8)
    out = tmp_path / "run"
    with OpenAIServer(echo_responder) as server:
        with monkeypatch.context() as patched:  # the kill: records committed, checkpoints not yet deleted
            patched.setattr(InlineSqliteSaver, "delete_threads", lambda self, ids: None)
            first, _ = asyncio.run(run_session(request(server, path, out, workers=1)))
        assert first.counts["ok"] == 8

        def left() -> int:
            with sqlite3.connect(out / "checkpoints.sqlite") as db:
                return int(db.execute("SELECT COUNT(DISTINCT thread_id) FROM checkpoints").fetchone()[0])

        assert left() == 8
        again, _ = asyncio.run(run_session(request(server, path, out, workers=1)))
    assert again.skipped == 8 and not again.counts
    assert left() == 0
