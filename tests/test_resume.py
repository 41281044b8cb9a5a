"""Resume after SIGKILL: ``synth run`` killed inside rows, re-run, compared with an uninterrupted run.

Graph ``synth.testing.graphs:CHAIN``: node ``draft`` (drafter) then node ``review`` (critic, then reviser).
A kill is aimed at a chosen row (picked by a seeded RNG): the server holds that row's first reviser request
(the process is killed while it waits), so the kill lands after the row's ``draft`` checkpoint and after its
critic call — inside the ``review`` node. The other rows in flight die wherever they are. On the re-run the
row's ``draft`` must not be called again (LangGraph checkpoint) and, with the call cache, neither must its
critic (the node restarts, its finished call is a cache hit).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
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

import pytest

from synth.engine.session import RunRequest, run_session
from synth.engine.store import RunStore
from synth.testing.graphs import echo_responder
from synth.testing.openai_server import OpenAIServer
from synth.testing.replies import Reply, system_text

ROWS = 30


class Scripted:
    """``echo_responder`` that counts calls per (row, role) and holds the armed (row, role) call once."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.armed: tuple[str, str] | None = None
        self.held = threading.Event()

    def arm(self, row: str, role: str) -> None:
        self.held.clear()
        self.armed = (row, role)

    def __call__(self, request: dict[str, Any]) -> Reply | str:
        prompt = next(m["content"] for m in request["messages"] if m["role"] == "user")
        role = system_text(request).split("You are the ", 1)[1].split(".", 1)[0]
        row = prompt.removeprefix("Text: ").split("(")[-1].rstrip(")")
        self.calls[row, role] += 1
        if self.armed == (row, role):
            self.armed = None
            self.held.set()
            return Reply(content=echo_responder(request), latency_ms=20_000)  # the kill comes first
        return echo_responder(request)


@pytest.fixture
def server() -> Iterator[tuple[OpenAIServer, Scripted]]:
    script = Scripted()
    with OpenAIServer(script, latency=0.02) as srv:
        yield srv, script


def seeds(tmp_path: Path) -> Path:
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(ROWS)))
    return path


def command(srv: OpenAIServer, seeds: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "synth", "run", "synth.testing.graphs:CHAIN", "--input", str(seeds),
        "--out", str(out), "--model", f"openai:m@{srv.base_url}", "--concurrency", "4", *extra,
    ]  # fmt: skip


def request(srv: OpenAIServer, seeds: Path, out: Path, **changes: Any) -> RunRequest:
    return RunRequest(
        graph="synth.testing.graphs:CHAIN",
        input=seeds,
        out=out,
        models={"default": f"openai:m@{srv.base_url}"},
        concurrency=4,
        **changes,
    )


def kill_inside(script: Scripted, cmd: list[str], row: str, cache: Path | None) -> None:
    """Run ``cmd`` and SIGKILL it while ``row``'s reviser call is held (its critic call finished)."""
    script.arm(row, "reviser")
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: script.held.is_set() or process.poll() is not None, what=f"{row}'s reviser call")
        assert script.held.is_set(), f"synth run ended before the kill: {process.stderr.read()!r}"  # type: ignore[union-attr]
        if cache is not None:  # the critic's result is committed by the cache's writer thread
            critic = f"critic(drafter({row}))"
            _wait_for(lambda: _cached(cache, critic), what=f"{row}'s critic call in the cache")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert process.stderr is not None
        process.stderr.close()


def _cached(cache: Path, text: str) -> bool:
    if not cache.exists():
        return False
    try:
        db = sqlite3.connect(f"file:{cache}?mode=ro", uri=True)
        try:
            return bool(db.execute("SELECT 1 FROM calls WHERE value LIKE ?", (f"%{text}%",)).fetchone())
        finally:
            db.close()
    except sqlite3.OperationalError:  # created but no table yet
        return False


def _wait_for(condition: Any, *, what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` (a cross-process state: nothing to await) until true or the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def outcome(folder: Path) -> dict[str, Any]:
    """The records' content that must not depend on interruptions (ids, results, steps; no timestamps)."""
    store = RunStore(folder)
    try:
        return {
            r.id: (r.status, r.result, [(s.role, s.node, s.output, s.ok) for s in r.steps])
            for r in store.iter_records()
        }
    finally:
        store.close()


def test_three_kills_resume_to_the_uninterrupted_result(
    tmp_path: Path, server: tuple[OpenAIServer, Scripted]
) -> None:
    srv, script = server
    path = seeds(tmp_path)
    reference, _ = asyncio.run(run_session(request(srv, path, tmp_path / "reference")))
    assert reference.counts["ok"] == ROWS
    expected = outcome(tmp_path / "reference")

    script.calls.clear()
    out = tmp_path / "run"
    rng = random.Random(20261123)
    # One kill per run, in row order, far enough apart (> concurrency + a few rows) that a victim was never
    # started by an earlier run.
    victims = [f"row {rng.randrange(lo, lo + 4)}" for lo in (1, 11, 21)]
    for victim in victims:
        kill_inside(script, command(srv, path, out), victim, out / "calls.sqlite")
    assert 0 < len(outcome(out)) < ROWS, "the kills must land mid-run"

    final, _ = asyncio.run(run_session(request(srv, path, out)))
    assert outcome(out) == expected
    # The last victim resumes in the final run; the others resumed in the runs after their kill.
    assert final.usage.cached_calls > 0 and next(iter(final.clients.values()))["cache_hits"] > 0
    store = RunStore(out)
    critic = {r.seed["text"]: next(s for s in r.steps if s.role == "critic") for r in store.iter_records()}
    store.close()
    assert all(critic[victim].cached for victim in victims)
    for victim in victims:
        # draft: resumed from the checkpoint; critic: a cache hit; reviser: killed once, then paid.
        assert script.calls[victim, "drafter"] == 1, victim
        assert script.calls[victim, "critic"] == 1, victim
        assert script.calls[victim, "reviser"] == 2, victim


def test_without_the_cache_a_killed_row_resumes_from_its_checkpoint(
    tmp_path: Path, server: tuple[OpenAIServer, Scripted]
) -> None:
    srv, script = server
    path = seeds(tmp_path)
    out = tmp_path / "run"
    kill_inside(script, command(srv, path, out, "--no-cache"), "row 5", None)
    assert not (out / "calls.sqlite").exists()
    summary, _ = asyncio.run(run_session(request(srv, path, out, cache=False)))
    records = outcome(out)
    assert len(records) == ROWS and summary.usage.cached_calls == 0
    assert all(status == "ok" for status, _, _ in records.values())
    # The earlier node is not repeated (checkpoint); the interrupted node re-runs whole (no cache).
    assert script.calls["row 5", "drafter"] == 1
    assert script.calls["row 5", "critic"] == 2
    assert script.calls["row 5", "reviser"] == 2
