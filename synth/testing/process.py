"""Run the loopback OpenAI double as a child process (for benchmarks).

On a 2-core machine an in-thread server shares the GIL with the client under test and distorts its
timings; a separate process gets its own core. Control goes over HTTP (``/_stats``, ``/_reset``,
``/_config``), so the benchmark can read the server's max in-flight count and change faults mid-run.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


class ServerProcess:
    """``python -m synth.testing.openai_server`` with keyword flags, e.g. ``ServerProcess(latency_ms=200)``.

    Keyword names are the CLI flags with ``_`` for ``-`` (``latency_ms``, ``jitter_ms``, ``straggler_rate``,
    ``error_500``, ``rate_limit_429``, ``hang``, ``malformed``, ``reset``, ``fail_first``, ``fault_seed``,
    ``responder="pkg.mod:fn"``...).
    """

    def __init__(
        self, *, port: int = 0, python: str = sys.executable, startup_timeout_s: float = 30.0, **flags: Any
    ) -> None:
        self._argv = [python, "-m", "synth.testing.openai_server", "--port", str(port)]
        for name, value in flags.items():
            self._argv += [f"--{name.replace('_', '-')}", str(value)]
        self._timeout = startup_timeout_s
        self._proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    @property
    def url(self) -> str:
        return self.base_url.removesuffix("/v1")

    def cpu_seconds(self) -> float:
        """CPU time the server process has used (user + system, from /proc): benches subtract two
        readings to see what the server costs per call on a machine it shares with the client."""
        assert self._proc is not None, "start() the server first"
        fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def start(self) -> ServerProcess:
        self._proc = subprocess.Popen(self._argv, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._proc.stdout], [], [], 0.2)
            if ready:
                line = self._proc.stdout.readline()
                if line.startswith("READY "):
                    self.base_url = line.split()[1]
                    return self
            if self._proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"the test server did not start: {' '.join(self._argv)}")

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_stats")

    def reset_counters(self) -> None:
        self._call("POST", "/_reset", {})

    def configure(
        self, *, latency: dict[str, Any] | None = None, faults: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Change :class:`Latency`/:class:`Faults` fields (by their dataclass names) in the running server."""
        body: dict[str, Any] = {}
        if latency:
            body["latency"] = latency
        if faults:
            body["faults"] = faults
        return self._call("POST", "/_config", body)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
