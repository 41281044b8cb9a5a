"""A minimal HTTP/1.1 server protocol on bare asyncio, for the loopback OpenAI double.

Why not a framework: the double must sustain hundreds of requests per second on a 2-core machine while the
client under test runs beside it, and it must be able to misbehave (hold a request forever, reset the TCP
connection) in ways frameworks hide. Plain ``asyncio.Protocol`` with keep-alive costs ~0.1 ms per request
and adds no dependency. Only what OpenAI clients send is supported: requests with ``Content-Length``
bodies (no chunked uploads, no pipelining beyond sequential handling per connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    411: "Length Required",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class HttpRequest:
    """One parsed request; header names are lower-case."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


Handler = Callable[[HttpRequest, "HttpConnection"], Awaitable[None]]


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection: parses requests and runs ``handler`` for each, one at a time.

    The handler task is cancelled when the peer goes away, so a request that is held ("hang" fault) or
    sleeping (latency) ends as soon as the client gives up, and server shutdown is immediate.
    """

    def __init__(self, handler: Handler, registry: set[HttpConnection]) -> None:
        self._handler = handler
        self._registry = registry
        self._buf = bytearray()
        self._task: asyncio.Task[None] | None = None
        self._keep_alive = True
        self.transport: asyncio.Transport | None = None
        self.closed = False

    # -- asyncio.Protocol -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._registry.add(self)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._task is None:
            self._next_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._registry.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()

    # -- parsing ----------------------------------------------------------------------------------------
    def _next_request(self) -> None:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEADER_BYTES:
                self._fail(413)
            return
        head = bytes(self._buf[:end]).decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            self._fail(400)
            return
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                self._fail(400)
                return
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._fail(411)
            return
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._fail(400)
            return
        if length > MAX_BODY_BYTES:
            self._fail(413)
            return
        total = end + 4 + length
        if len(self._buf) < total:
            return
        body = bytes(self._buf[end + 4 : total])
        del self._buf[:total]
        conn_header = headers.get("connection", "").lower()
        self._keep_alive = conn_header != "close" and not (
            version == "HTTP/1.0" and conn_header != "keep-alive"
        )
        request = HttpRequest(method=method.upper(), path=target, headers=headers, body=body)
        self._task = asyncio.get_running_loop().create_task(self._run(request))

    async def _run(self, request: HttpRequest) -> None:
        try:
            await self._handler(request, self)
        except asyncio.CancelledError:
            return
        except Exception:  # a handler bug must not kill the server; report it to the client
            if not self.closed:
                self.send(
                    500, b'{"error": {"message": "test server handler crashed", "type": "server_error"}}'
                )
        self._task = None
        if self.closed:
            return
        if not self._keep_alive:
            self.close()
        elif self._buf:
            self._next_request()

    def _fail(self, status: int) -> None:
        self._keep_alive = False
        self.send(status, b"")
        self.close()

    # -- writing ----------------------------------------------------------------------------------------
    def send(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Write one complete response (no-op when the peer is already gone)."""
        self.send_head(status, len(body), content_type=content_type, headers=headers)
        self.write(body)

    def send_head(
        self,
        status: int,
        length: int,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Write the status line and headers of a ``length``-byte response; the body follows by :meth:`write`
        (a drip-feed fault writes it a few bytes at a time)."""
        if self.closed or self.transport is None or self.transport.is_closing():
            return
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
            f"Content-Type: {content_type}",
            f"Content-Length: {length}",
            "Connection: keep-alive" if self._keep_alive else "Connection: close",
        ]
        lines.extend(f"{k}: {v}" for k, v in (headers or {}).items())
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def write(self, data: bytes) -> None:
        """Write raw body bytes (no-op when the peer is already gone)."""
        if data and not self.closed and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def start_chunked(self, status: int, content_type: str = "text/event-stream") -> None:
        """Begin a streamed response; follow with :meth:`send_chunk` calls and :meth:`end_chunked`."""
        if self.closed or self.transport is None:
            return
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n"
            f"Connection: {'keep-alive' if self._keep_alive else 'close'}\r\n\r\n"
        )
        self.transport.write(head.encode("latin-1"))

    def send_chunk(self, data: bytes) -> None:
        if data and not self.closed and self.transport is not None:
            self.transport.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def end_chunked(self) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(b"0\r\n\r\n")

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), like a crashed proxy or server."""
        if self.transport is None or self.transport.is_closing():
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


async def start_http_server(
    handler: Handler, host: str, port: int
) -> tuple[asyncio.Server, set[HttpConnection]]:
    """Listen on ``host:port`` (0 = a free port); returns the server and the live-connection registry."""
    registry: set[HttpConnection] = set()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpConnection(handler, registry), host, port, reuse_address=True, backlog=1024
    )
    return server, registry


async def stop_http_server(server: asyncio.Server, registry: set[HttpConnection]) -> None:
    """Stop listening and abort every open connection (which cancels in-flight handlers)."""
    server.close()
    for conn in list(registry):
        if conn.transport is not None:
            conn.transport.abort()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server.wait_closed(), 2.0)
