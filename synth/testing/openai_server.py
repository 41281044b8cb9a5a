"""A loopback OpenAI-compatible server: the test double for paid APIs and for throughput benchmarks.

Real HTTP on 127.0.0.1, so tests exercise the real ``openai``/autogen client stack (connection pool,
timeouts, error mapping) instead of patched methods. It answers ``POST /v1/chat/completions`` (also
streamed), ``POST /v1/completions`` (legacy, for ``echo``/``logprobs`` scoring) and ``GET /v1/models``;
the reply comes from a *responder* (see :mod:`synth.testing.replies`). It can be slow (fixed latency,
jitter, stragglers) and misbehave on purpose (500, 429 + ``Retry-After``, hangs, malformed content,
TCP resets, HTTP 200 with garbage — empty, HTML, no ``choices``, ``{"error": ...}`` — and drip-fed bodies)
at seeded rates or for the first N calls, and it counts what happened. A huge reply is just a scripted one.

In-process (a background thread with its own event loop, so sync and async tests both work)::

    with OpenAIServer(latency=0.05) as server:
        server.script({"capital": "Paris"})           # substring of the last user message -> reply
        server.set_faults(error_500=0.1, seed=1)
        ...  # point a client at server.base_url
        server.stats()["by_outcome"]

As a separate process (benchmarks: keeps the server's CPU off the client's event loop)::

    python -m synth.testing.openai_server --port 0 --latency-ms 200 --jitter-ms 20 --error-500 0.01
    # prints "READY http://127.0.0.1:PORT/v1"; GET /_stats, POST /_reset, POST /_config {"faults": {...}}

or :class:`synth.testing.process.ServerProcess` which does that for you.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import signal
import sys
import threading
from typing import Any

from synth.testing._core import Faults, Latency, ServerCore
from synth.testing._http import HttpConnection, start_http_server, stop_http_server
from synth.testing.replies import Responder

__all__ = ["Faults", "Latency", "OpenAIServer", "ServerCore", "build_parser", "main"]


class OpenAIServer(ServerCore):
    """The server in a daemon thread with its own event loop; a context manager. See the module docs."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency: Latency | float = 0.0,
        faults: Faults | None = None,
        model: str = "mock-model",
        host: str = "127.0.0.1",
        port: int = 0,
        log_limit: int = 1000,
    ) -> None:
        super().__init__(responder, latency=latency, faults=faults, model=model, log_limit=log_limit)
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._registry: set[HttpConnection] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What OpenAI clients take as ``base_url``: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    def start(self) -> OpenAIServer:
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server, self._registry = loop.run_until_complete(
                    start_http_server(self.handle, self.host, self.port)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(stop_http_server(self._server, self._registry))
                for task in asyncio.all_tasks(loop):
                    task.cancel()
                loop.run_until_complete(asyncio.sleep(0))
                loop.close()

        self._thread = threading.Thread(target=main, name="openai-test-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# -- process mode --------------------------------------------------------------------------------------
def _load_responder(ref: str) -> Responder:
    module, _, attr = ref.partition(":")
    if not attr:
        raise SystemExit(f"--responder must look like package.module:function, got {ref!r}")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


_LATENCY_FLAGS = {
    "latency-ms": "mean_ms",
    "jitter-ms": "jitter_ms",
    "straggler-rate": "straggler_rate",
    "straggler-factor": "straggler_factor",
    "latency-seed": "seed",
}


def build_parser() -> argparse.ArgumentParser:
    """CLI flags: one per :class:`Latency` field (``--latency-ms`` = mean) and :class:`Faults` field."""
    p = argparse.ArgumentParser(
        prog="python -m synth.testing.openai_server", description=__doc__.split("\n")[0]
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on the READY line)")
    p.add_argument("--model", default="mock-model")
    p.add_argument("--responder", help="package.module:function (default: deterministic echo)")
    defaults = dataclasses.asdict(Latency())
    for flag, name in _LATENCY_FLAGS.items():
        p.add_argument(f"--{flag}", dest=f"latency_{name}", type=type(defaults[name]), default=defaults[name])
    for name, default in dataclasses.asdict(Faults()).items():
        flag = "fault-seed" if name == "seed" else name.replace("_", "-")
        p.add_argument(f"--{flag}", dest=f"faults_{name}", type=type(default), default=default)
    return p


async def _serve_forever(core: ServerCore, host: str, port: int) -> None:
    server, registry = await start_http_server(core.handle, host, port)
    print(f"READY http://{host}:{server.sockets[0].getsockname()[1]}/v1", flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    await stop_http_server(server, registry)


def main(argv: list[str] | None = None) -> None:
    args = vars(build_parser().parse_args(argv))
    latency = Latency(**{k[8:]: v for k, v in args.items() if k.startswith("latency_")})
    faults = Faults(**{k[7:]: v for k, v in args.items() if k.startswith("faults_")})
    responder = _load_responder(args["responder"]) if args["responder"] else None
    core = ServerCore(responder, latency=latency, faults=faults, model=args["model"])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(core, args["host"], args["port"]))
    sys.exit(0)


if __name__ == "__main__":
    main()
