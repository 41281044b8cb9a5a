"""``synth run`` as a user meets it, in a subprocess: terminal output, Ctrl-C, exit status.

Before: a faulty run printed every AutoGen traceback (132 for 300 rows), Ctrl-C printed 831 lines and no
way to resume, and the exit status was 0 even when every row failed or the server was down.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from synth.cli.console import EXIT_INTERRUPTED, EXIT_NO_ROW_OK, EXIT_PARTIAL
from synth.engine.logs import read_events
from synth.engine.store import RunStore
from synth.testing.graphs import echo_responder
from synth.testing.openai_server import OpenAIServer
from synth.testing.replies import Reply
from tests.hostile.test_debate_repair import responder as debate_responder

ROOT = Path(__file__).resolve().parents[2]


def synth_run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synth", "run", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        cwd=ROOT,
    )


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "NO_COLOR": "1"}


def seeds(tmp_path: Path, texts: list[str]) -> Path:
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


class Doomed:
    """Rows containing one of ``doomed`` get a 400 (not retried: the run stays fast); others echo."""

    def __init__(self, *doomed: str) -> None:
        self.doomed = doomed

    def __call__(self, request: dict[str, Any]) -> Reply | str:
        prompt = next(m["content"] for m in request["messages"] if m["role"] == "user")
        if any(word in prompt for word in self.doomed):
            return Reply(status=400, error="prompt rejected")
        return echo_responder(request)


def test_partial_failure_prints_one_line_per_kind_and_a_summary_and_exits_by_the_flag(
    tmp_path: Path,
) -> None:
    responder = Doomed("DOOMED", "LATER")
    with OpenAIServer(responder) as server:
        base = ["synth.testing.graphs:ECHO", "-i", str(seeds(tmp_path, ["a", "b", "DOOMED", "LATER ok"]))]
        base += ["-o", str(tmp_path / "run"), "-m", f"openai:m@{server.base_url}"]
        done = synth_run(*base)
        assert done.returncode == 0, done.stderr  # some rows succeeded: 0 without --fail-on-error
        err = done.stderr
        assert "Traceback" not in err
        assert err.count("failed echo: backend (BadRequestError) — first at") == 1  # one line per kind
        assert "2 row(s) failed" in err and "2 x echo: backend (BadRequestError)" in err
        assert f"retry them: synth run {' '.join(base)} --retry-failed" in err
        assert f"synth status {tmp_path / 'run'}" in err

        responder.doomed = ("DOOMED",)  # one of the two failed rows can now succeed
        again = synth_run(*base, "--retry-failed", "--fail-on-error")
        assert again.returncode == EXIT_PARTIAL, again.stderr
        assert "1 row(s) failed" in again.stderr and "wrote 2 (" in again.stderr
        store = RunStore(tmp_path / "run")
        assert store.counts() == {"ok": 3, "failed": 1}
        store.close()


def test_no_row_succeeded_when_the_server_is_down(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = synth_run(
        "synth.testing.graphs:ECHO", "-i", str(seeds(tmp_path, ["a", "b"])), "-o", str(tmp_path / "run"),
        "-m", f"openai:m@http://127.0.0.1:{port}/v1", "--retries", "0",
    )  # fmt: skip
    assert done.returncode == EXIT_NO_ROW_OK, done.stderr
    assert "2 x echo: backend (APIConnectionError)" in done.stderr and "Traceback" not in done.stderr


def test_library_tracebacks_go_to_the_log_not_the_terminal_unless_verbose(tmp_path: Path) -> None:
    """A debate that keeps failing makes AutoGen log its team errors with stack traces."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(json.dumps({"instruction": f"CRITIC_ALWAYS {i}", "output": "v"}) + "\n" for i in range(3))
    )
    with OpenAIServer(debate_responder) as server:
        args = ["coevol", "-i", str(rows), "-m", f"openai:m@{server.base_url}", "-O", "max_rounds=1"]
        quiet = synth_run(*args, "-o", str(tmp_path / "quiet"))
        verbose = synth_run(*args, "-o", str(tmp_path / "verbose"), "--verbose")
    assert quiet.returncode == verbose.returncode == EXIT_NO_ROW_OK
    assert "Traceback" not in quiet.stderr and "Error processing publish message" not in quiet.stderr
    assert len(quiet.stderr.splitlines()) < 15, quiet.stderr
    assert "critical_debater: validation (ValidationError)" in quiet.stderr
    logged = list(read_events(tmp_path / "quiet" / "log.jsonl", "library_log"))
    assert logged and any("Traceback" in (e.get("traceback") or "") for e in logged)
    assert "Error processing publish message" in verbose.stderr and "Traceback" in verbose.stderr


def test_ctrl_c_stops_cleanly_keeps_the_rows_and_says_how_to_resume(tmp_path: Path) -> None:
    texts = [f"row {i}" for i in range(30)]
    with OpenAIServer(echo_responder, latency=0.2) as server:
        args = ["synth.testing.graphs:ECHO", "-i", str(seeds(tmp_path, texts)), "-o", str(tmp_path / "run")]
        args += ["-m", f"openai:m@{server.base_url}", "-c", "2"]
        # A shell runs background jobs (`make test &`) with SIGINT ignored and children inherit that; Python
        # then keeps ignoring it (as a CLI should in a background job). This test is about Ctrl-C in a
        # terminal, so the child gets the default disposition back.
        proc = subprocess.Popen(
            [sys.executable, "-m", "synth", "run", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while server.stats()["by_outcome"].get("ok", 0) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == EXIT_INTERRUPTED, err
        assert "Traceback" not in err and len(err.splitlines()) < 10, err
        assert "Re-run the same command to resume:" in err and f"synth run {' '.join(args)}" in err
        store = RunStore(tmp_path / "run")
        kept = store.counts()
        store.close()
        assert 2 <= kept.get("ok", 0) < len(texts)  # the finished rows stayed

        resumed = synth_run(*args)
        assert resumed.returncode == 0, resumed.stderr
        store = RunStore(tmp_path / "run")
        assert store.counts() == {"ok": len(texts)}
        store.close()
