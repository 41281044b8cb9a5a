"""Batch-job output: a redirected ``synth run`` prints a plain progress line at a steady interval.

The end-to-end tests run the real CLI in a subprocess against the loopback server (latency keeps the run
a few seconds long; three scripted 500s make retries), once with stdout on a pipe and once on a terminal.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from synth.cli.progress import BatchProgress
from synth.testing import Faults, Latency, OpenAIServer

ROWS = 12
LINE = re.compile(
    r"^\[\d\d:\d\d:\d\d chain\] (\d+)/(\d+) rows \(ok (\d+), failed (\d+), filtered (\d+)\) \| "
    r"([\d.]+) rows/(?:s|min) \| (\d+) calls in flight \| (\d+) retries \| elapsed [\d:]+ \| ETA ([\d:]+|\?)$"
)


def command(server: OpenAIServer, tmp_path: Path, *extra: str) -> list[str]:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(ROWS)))
    return [
        sys.executable, "-m", "synth", "run", "synth.testing.graphs:CHAIN", "--input", str(seeds),
        "--out", str(tmp_path / "run"), "--model", f"openai:m@{server.base_url}", "--concurrency", "2",
        "--backoff", "0.01", "--no-cache", *extra,
    ]  # fmt: skip


def test_redirected_run_prints_a_line_at_each_interval(tmp_path: Path) -> None:
    # 12 rows x 3 calls x 0.25 s over 2 rows in flight: ~4.5 s of run, lines every 0.5 s
    with OpenAIServer(latency=Latency(mean_ms=250), faults=Faults(fail_first=3)) as server:
        run = subprocess.run(
            command(server, tmp_path, "--progress-every", "0.5"),
            capture_output=True,  # stdout on a pipe, as under nohup or a Slurm log
            text=True,
            timeout=120,
        )
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed, strict=True) if not m]
    rows = [tuple(int(m.group(i)) for i in (1, 2, 3, 4, 5, 8)) for m in parsed if m]
    assert len(rows) >= 5, lines  # a line per interval while the run lasts, then the last one
    done = [r[0] for r in rows]
    assert done == sorted(done) and done[0] < ROWS, lines  # progress shows up before the end
    assert all(r[1] == ROWS for r in rows)
    assert rows[-1] == (ROWS, ROWS, ROWS, 0, 0, 3), lines[-1]  # all ok; the three 500s were retried
    assert any(int(m.group(7)) > 0 for m in parsed if m), lines  # calls were seen in flight mid-run
    mid = next(m for m in parsed if m and 0 < int(m.group(1)) < ROWS)
    assert float(mid.group(6)) > 0 and mid.group(9) != "?", mid.group(0)  # a rate and an ETA once rows finish


def test_with_workers_the_line_counts_the_workers_calls(tmp_path: Path) -> None:
    """The workers make the calls: the line shows their calls in flight and retries (the parent's own
    clients stay at 0; the line read those before)."""
    with OpenAIServer(latency=Latency(mean_ms=250), faults=Faults(fail_first=3)) as server:
        run = subprocess.run(
            command(server, tmp_path, "--progress-every", "0.5", "--workers", "2"),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 0, run.stderr
    parsed = [LINE.match(line) for line in run.stdout.splitlines() if line.strip()]
    assert parsed and all(parsed), run.stdout
    assert any(int(m.group(7)) > 0 for m in parsed if m), run.stdout  # calls in flight mid-run
    assert int(parsed[-1].group(8)) == 3, run.stdout  # the three 500s, retried in whichever worker


def test_a_terminal_gets_the_live_bar_and_zero_turns_lines_off(tmp_path: Path) -> None:
    with OpenAIServer(latency=Latency(mean_ms=20)) as server:
        leader, follower = pty.openpty()
        try:
            tty = subprocess.run(
                command(server, tmp_path, "--progress-every", "0.05"),
                stdout=follower,
                stderr=subprocess.PIPE,
                timeout=120,
            )
            os.close(follower)
            follower = -1
            out = b""
            while chunk := _read(leader):
                out += chunk
        finally:
            if follower >= 0:
                os.close(follower)
            os.close(leader)
        assert tty.returncode == 0, tty.stderr
        assert b"calls in flight" not in out, out  # stdout is a terminal: no plain lines there
        off = subprocess.run(
            command(server, tmp_path, "--progress-every", "0", "--force"),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert off.returncode == 0, off.stderr
    assert off.stdout == ""


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # Linux raises EIO once the terminal's other side is closed and drained
        return b""


def stats(in_flight: int, retries: int) -> SimpleNamespace:
    return SimpleNamespace(in_flight=in_flight, retries=retries)


def test_line_rate_eta_unknown_total_and_calls_elsewhere() -> None:
    clock = [100.0]
    counts = {"ok": 30, "failed": 2, "filtered": 8}
    clients = [SimpleNamespace(stats=lambda: stats(5, 2)), SimpleNamespace(stats=lambda: stats(3, 1))]
    lines: list[str] = []
    printer = BatchProgress("coevol", lambda: clients, clock=lambda: clock[0], write=lines.append)
    printer.watch(SimpleNamespace(counts=counts, total=200))
    clock[0] = 120.0
    printer.print()
    assert lines[0].split("] ", 1)[1] == (
        "40/200 rows (ok 30, failed 2, filtered 8) | 2.00 rows/s | 8 calls in flight | 3 retries"
        " | elapsed 0:00:20 | ETA 0:01:20"
    )
    clock[0] = 100.0 + 20 * 60  # 40 rows in 20 minutes: per second would print 0.03
    assert " | 2.00 rows/min | " in printer.line() and printer.line().endswith("ETA 1:20:00")
    unknown = BatchProgress("g", None, clock=lambda: clock[0])
    unknown.watch(SimpleNamespace(counts={}, total=None))
    expected = "0 rows (ok 0, failed 0, filtered 0) | 0.00 rows/s | elapsed 0:00:00 | ETA ?"
    assert unknown.line().split("] ", 1)[1] == expected
