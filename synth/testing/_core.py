"""The request-handling core of the loopback OpenAI double: configuration, faults, latency, counters.

Kept apart from :mod:`synth.testing.openai_server`, which hosts it (in a thread or as a process).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from synth.testing._http import HttpConnection, HttpRequest
from synth.testing.replies import (
    FAULT_KINDS,
    GARBAGE_BODIES,
    GARBAGE_KINDS,
    Reply,
    ReplyLike,
    Responder,
    as_responder,
    chat_body,
    completion_body,
    default_responder,
    error_body,
    split_stream_pieces,
    to_reply,
)


@dataclass(frozen=True)
class Latency:
    """Service time per completion: ``mean_ms ± jitter_ms`` (uniform); stragglers are ``factor`` x slower."""

    mean_ms: float = 0.0
    jitter_ms: float = 0.0
    straggler_rate: float = 0.0
    straggler_factor: float = 10.0
    seed: int = 0


@dataclass(frozen=True)
class Faults:
    """Fault rates per completion request (drawn from a seeded RNG in arrival order), plus fail-first-N.

    ``hang`` holds the request without answering until the client disconnects (or ``hang_max_s``, after
    which the connection is closed), so a client timeout is the only way out — and shutdown stays quick.
    ``garbage_200`` answers HTTP 200 with something that is not a completion (an empty body, an HTML
    error page, JSON without ``choices``, an ``{"error": ...}`` object), one of them drawn at random.
    ``drip`` sends the headers and then the body ``drip_bytes`` at a time every ``drip_interval_s``: every
    read succeeds, so only a deadline on the whole call ends it.
    """

    error_500: float = 0.0
    rate_limit_429: float = 0.0
    hang: float = 0.0
    malformed: float = 0.0
    reset: float = 0.0
    garbage_200: float = 0.0
    drip: float = 0.0
    fail_first: int = 0
    fail_first_with: str = "500"
    retry_after_s: float = 1.0
    hang_max_s: float = 60.0
    malformed_content: str = '{"answer": "this reply was cut off'
    drip_interval_s: float = 0.05
    drip_bytes: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.fail_first_with not in FAULT_KINDS:
            raise ValueError(f"fail_first_with must be one of {FAULT_KINDS}")
        if sum(self.rates().values()) > 1.0:
            raise ValueError("fault rates add up to more than 1")

    def rates(self) -> dict[str, float]:
        return {
            "500": self.error_500,
            "429": self.rate_limit_429,
            "hang": self.hang,
            "malformed": self.malformed,
            "reset": self.reset,
            "garbage_200": self.garbage_200,
            "drip": self.drip,
        }


class ServerCore:
    """Request handling, configuration and counters; independent of how the event loop is hosted."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency: Latency | float = 0.0,
        faults: Faults | None = None,
        model: str = "mock-model",
        log_limit: int = 1000,
    ) -> None:
        self.responder: Responder = responder or default_responder
        self.model = model
        self._lock = threading.Lock()
        self._log: deque[dict[str, Any]] = deque(maxlen=log_limit)
        self.set_latency(latency)
        self.set_faults(**dataclasses.asdict(faults or Faults()))
        self.reset_counters()

    # -- configuration ----------------------------------------------------------------------------------
    def set_latency(self, latency: Latency | float | None = None, **changes: Any) -> Latency:
        """Replace the latency model: a :class:`Latency`, a mean in seconds, or field changes."""
        base = getattr(self, "latency", Latency())
        if isinstance(latency, Latency):
            base = latency
        elif latency is not None:
            base = Latency(mean_ms=float(latency) * 1000.0)
        self.latency = dataclasses.replace(base, **changes)
        self._latency_rng = random.Random(self.latency.seed)
        return self.latency

    def set_faults(self, **changes: Any) -> Faults:
        """Change fault settings (merged with the current ones); restarts the RNG and the fail-first count."""
        self.faults = dataclasses.replace(getattr(self, "faults", Faults()), **changes)
        self._fault_rng = random.Random(self.faults.seed)
        self._fail_first_left = self.faults.fail_first
        return self.faults

    def clear_faults(self) -> Faults:
        self.faults = Faults()
        self._fault_rng = random.Random(0)
        self._fail_first_left = 0
        return self.faults

    def script(
        self,
        script: Responder | ReplyLike | dict[str, Any] | list[Any],
        *,
        where: str = "user",
        default: Responder | ReplyLike | None = None,
    ) -> Responder:
        """Set the responder: a callable, a list (queue), a ``{substring: reply}`` dict, or a fixed reply."""
        self.responder = as_responder(script, where=where, default=default)
        return self.responder

    # -- counters ---------------------------------------------------------------------------------------
    def reset_counters(self) -> None:
        """Zero the counters and the request log; requests still in flight stay counted as in flight."""
        with self._lock:
            in_flight = getattr(self, "_counts", {}).get("in_flight", 0)
            self._counts: dict[str, Any] = {
                "requests_total": 0,
                "completions": 0,
                "in_flight": in_flight,
                "max_in_flight": in_flight,
                "prompt_tokens": 0,
                "completion_tokens": 0,
            }
            self._by_outcome: Counter[str] = Counter()
            self._by_path: Counter[str] = Counter()
            self._log.clear()

    def stats(self) -> dict[str, Any]:
        """A snapshot: totals, ``by_outcome`` (ok, malformed, 500, 429, hang, reset, client_gone, ...),
        ``by_path``, ``in_flight``/``max_in_flight`` and token sums."""
        with self._lock:
            return {**self._counts, "by_outcome": dict(self._by_outcome), "by_path": dict(self._by_path)}

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Decoded bodies of the most recent completion requests (bounded by ``log_limit``), oldest first."""
        with self._lock:
            return list(self._log)

    def _outcome(self, name: str) -> None:
        with self._lock:
            self._by_outcome[name] += 1

    # -- decisions --------------------------------------------------------------------------------------
    def _draw_fault(self) -> str | None:
        if self._fail_first_left > 0:
            self._fail_first_left -= 1
            return self.faults.fail_first_with
        u, acc = self._fault_rng.random(), 0.0
        for kind, rate in self.faults.rates().items():
            acc += rate
            if u < acc:
                return self._fault_rng.choice(GARBAGE_KINDS) if kind == "garbage_200" else kind
        return None

    def _draw_latency_s(self) -> float:
        lat, rng = self.latency, self._latency_rng
        ms = lat.mean_ms + (rng.uniform(-lat.jitter_ms, lat.jitter_ms) if lat.jitter_ms else 0.0)
        if lat.straggler_rate and rng.random() < lat.straggler_rate:
            ms *= lat.straggler_factor
        return max(ms, 0.0) / 1000.0

    # -- HTTP -------------------------------------------------------------------------------------------
    async def handle(self, req: HttpRequest, conn: HttpConnection) -> None:
        path = req.path.split("?", 1)[0].rstrip("/")
        with self._lock:
            self._counts["requests_total"] += 1
            self._by_path[path] += 1
        if path.startswith("/v1/"):
            path = path[3:]
        if req.method == "POST" and path in ("/chat/completions", "/completions"):
            await self._completion(req, conn, chat=path == "/chat/completions")
        elif req.method == "GET" and path == "/models":
            data = [{"id": self.model, "object": "model", "created": 0, "owned_by": "synth-testing"}]
            conn.send(200, json.dumps({"object": "list", "data": data}).encode())
        elif req.method == "GET" and path == "/_stats":
            conn.send(200, json.dumps(self.stats()).encode())
        elif req.method == "POST" and path == "/_reset":
            self.reset_counters()
            conn.send(200, b"{}")
        elif req.method == "POST" and path == "/_config":
            self._configure(req, conn)
        else:
            conn.send(404, error_body(f"no route {req.method} {req.path}", "invalid_request_error"))

    def _configure(self, req: HttpRequest, conn: HttpConnection) -> None:
        try:
            body = json.loads(req.body or b"{}")
            if "latency" in body:
                self.set_latency(**body["latency"])
            if "faults" in body:
                self.set_faults(**body["faults"])
            if "model" in body:
                self.model = str(body["model"])
        except (TypeError, ValueError) as exc:
            conn.send(400, error_body(f"bad config: {exc}", "invalid_request_error"))
            return
        out = {"latency": dataclasses.asdict(self.latency), "faults": dataclasses.asdict(self.faults)}
        conn.send(200, json.dumps(out).encode())

    async def _completion(self, req: HttpRequest, conn: HttpConnection, *, chat: bool) -> None:
        try:
            body = json.loads(req.body)
            if not isinstance(body, dict):
                raise ValueError("body is not a JSON object")
        except ValueError as exc:
            self._outcome("bad_request")
            conn.send(400, error_body(f"invalid JSON body: {exc}", "invalid_request_error"))
            return
        with self._lock:
            self._counts["completions"] += 1
            index = self._counts["completions"]
            self._counts["in_flight"] += 1
            self._counts["max_in_flight"] = max(self._counts["max_in_flight"], self._counts["in_flight"])
            self._log.append(body)
        done: list[str] = []
        try:
            await self._answer(body, req, conn, chat=chat, index=index, done=done)
        finally:
            # A no-op unless the client went away first (a hang is counted when it starts).
            self._finish(done, "" if "hang" in done else "client_gone")

    def _finish(self, done: list[str], outcome: str) -> None:
        """Count the outcome and leave the in-flight set *before* the client can see the answer, so a test
        that reads the counters right after its call returns sees them settled."""
        if done and done[-1] != "hang":
            return
        done.append(outcome)
        with self._lock:
            self._counts["in_flight"] -= 1
            if outcome:
                self._by_outcome[outcome] += 1

    async def _answer(
        self,
        body: dict[str, Any],
        req: HttpRequest,
        conn: HttpConnection,
        *,
        chat: bool,
        index: int,
        done: list[str],
    ) -> None:
        fault = self._draw_fault()
        delay = self._draw_latency_s()
        if "x-mock-latency-ms" in req.headers:
            delay = float(req.headers["x-mock-latency-ms"]) / 1000.0
        reply = Reply()
        # A malformed fault corrupts the content of what would have been a 200; a scripted error reply
        # (a row whose every request must fail) stays an error, so the responder is asked first.
        if fault in (None, "malformed", "drip"):
            drawn = fault
            try:
                reply = to_reply(self.responder(body))
            except Exception as exc:  # a scripting mistake: fail loudly, not retryably
                self._finish(done, "responder_error")
                message = f"test responder failed: {type(exc).__name__}: {exc}"
                conn.send(422, error_body(message, "responder_error"))
                return
            fault = reply.fault or (drawn if reply.status is None else None)
            if reply.latency_ms is not None:
                delay = reply.latency_ms / 1000.0
        if fault == "hang":
            # Counted now (a test reads the counters right after its own timeout fires), but it stays in
            # flight until the client disconnects and cancels this handler.
            self._outcome("hang")
            done.append("hang")
            await asyncio.sleep(self.faults.hang_max_s)
            conn.close()
            return
        if delay > 0:
            await asyncio.sleep(delay)
        if fault == "reset":
            self._finish(done, "reset")
            conn.reset()
        elif fault == "500":
            self._finish(done, "500")
            conn.send(500, error_body("injected server error", "server_error"))
        elif fault == "429":
            self._finish(done, "429")
            ra = self.faults.retry_after_s
            header = str(int(ra)) if float(ra).is_integer() else f"{ra:g}"
            conn.send(
                429,
                error_body("injected rate limit", "rate_limit_error", "rate_limit_exceeded"),
                headers={"Retry-After": header, "x-ratelimit-remaining-requests": "0"},
            )
        elif fault in GARBAGE_BODIES:
            self._finish(done, fault)
            content_type, garbage = GARBAGE_BODIES[fault]
            conn.send(200, garbage, content_type=content_type)
        elif reply.status is not None:
            self._finish(done, str(reply.status))
            conn.send(reply.status, error_body(reply.error or "scripted error", "invalid_request_error"))
        else:
            if fault == "malformed":
                reply = Reply(content=self.faults.malformed_content)
            model = str(body.get("model") or self.model)
            out = (chat_body if chat else completion_body)(body, reply, index=index, model=model)
            with self._lock:
                self._counts["prompt_tokens"] += out["usage"]["prompt_tokens"]
                self._counts["completion_tokens"] += out["usage"]["completion_tokens"]
            self._finish(done, fault if fault in ("malformed", "drip") else "ok")
            if chat and body.get("stream"):
                self._stream(conn, body, out)
            elif fault == "drip":
                await self._drip(conn, json.dumps(out).encode())
            else:
                conn.send(200, json.dumps(out).encode(), headers={"x-request-id": f"req-{index}"})

    async def _drip(self, conn: HttpConnection, data: bytes) -> None:
        """A complete, valid answer trickled out: headers now, then a few bytes per interval."""
        conn.send_head(200, len(data))
        step = max(1, self.faults.drip_bytes)
        for start in range(0, len(data), step):
            if conn.closed:
                return
            conn.write(data[start : start + step])
            await asyncio.sleep(self.faults.drip_interval_s)

    def _stream(self, conn: HttpConnection, body: dict[str, Any], out: dict[str, Any]) -> None:
        """Server-sent events, one chunk per word, then finish_reason, then usage if asked for."""
        choice = out["choices"][0]
        base = {
            "id": out["id"],
            "object": "chat.completion.chunk",
            "created": out["created"],
            "model": out["model"],
        }

        def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            chunk = {
                **base,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
            return b"data: " + json.dumps({**chunk, **extra}).encode() + b"\n\n"

        conn.start_chunked(200)
        parts = [event({"role": "assistant", "content": ""})]
        parts += [
            event({"content": piece}) for piece in split_stream_pieces(choice["message"]["content"] or "")
        ]
        if choice["message"].get("tool_calls"):
            calls = [{"index": i, **c} for i, c in enumerate(choice["message"]["tool_calls"])]
            parts.append(event({"tool_calls": calls}))
        parts.append(event({}, choice["finish_reason"]))
        if (body.get("stream_options") or {}).get("include_usage"):
            parts.append(
                b"data: " + json.dumps({**base, "choices": [], "usage": out["usage"]}).encode() + b"\n\n"
            )
        parts.append(b"data: [DONE]\n\n")
        conn.send_chunk(b"".join(parts))
        conn.end_chunked()
