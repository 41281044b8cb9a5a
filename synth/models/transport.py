"""The HTTP client under every OpenAI-compatible backend: the aiohttp transport, one pool per event loop.

Why not the SDK's default (httpx + httpcore + anyio): per request it walks httpcore's connection pool
(a scan over every connection, so the cost grows with the calls in flight), wraps the socket in anyio
streams and parses HTTP with h11 in Python. Measured on the loopback server at 64 calls in flight: ~1.9 ms
of client CPU per call with the default transport against ~1.2 ms with ``openai.DefaultAioHttpClient``
(aiohttp's C HTTP parser, a keep-alive pool without the scan) — the same SDK, requests and replies
(``bench/throughput.py``, ``naive`` vs ``naive_aiohttp``).

aiohttp's session belongs to the event loop it was created on, while one model client may serve several
loops in turn (the CLI's phases, tests, a thread per loop): :class:`PerLoopTransport` keeps one aiohttp
transport (one connection pool) per running loop, created on the loop's first request. Without the
``aiohttp`` extra installed (``openai[aiohttp]``) the SDK's default client is used, unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import ssl
import sys
import weakref
from typing import Any

import openai
import pydantic

from synth.models.direct_post import DirectChatPost


class PerLoopTransport:
    """An httpx transport that hands each request to a copy of ``template`` owned by the running loop.

    ``template`` is an unused aiohttp transport (its session is created lazily, on the first request):
    a shallow copy shares its settings (limits, TLS context, proxy) and starts with no session.
    """

    def __init__(self, template: Any) -> None:
        self._template = template
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    def _transport(self) -> Any:
        loop = asyncio.get_running_loop()
        transport = self._by_loop.get(loop)
        if transport is None:
            self._forget_closed_loops()
            transport = self._by_loop[loop] = copy.copy(self._template)
        return transport

    def _forget_closed_loops(self) -> None:
        """Drop the pools of loops that ended without closing them (``asyncio.run`` per phase or test).

        A pool refers to its loop, so the weak keys alone would never let one go. Its sockets can no longer
        be closed through that loop; marking the connector closed stops aiohttp warning about it at exit."""
        for loop in [loop for loop in self._by_loop if loop.is_closed()]:
            transport = self._by_loop.pop(loop)
            session = getattr(transport, "client", None)
            connector = getattr(session, "connector", None)
            if connector is not None:
                with contextlib.suppress(Exception):  # its transports' close() needs the closed loop
                    connector._close()

    @property
    def proxied(self) -> bool:
        """True when the transport sends through a proxy (``DefaultAioHttpClient(proxy=...)``)."""
        return getattr(self._template, "proxy", None) is not None

    def session(self) -> Any:
        """The running loop's ``aiohttp.ClientSession`` (the pool this transport's requests use), created
        with the SDK transport's own settings on first use."""
        import aiohttp

        transport = self._transport()
        if not isinstance(transport.client, aiohttp.ClientSession):
            transport.client = transport.get_client()
        return transport.client

    async def handle_async_request(self, request: Any) -> Any:
        try:
            return await self._transport().handle_async_request(request)
        except Exception as exc:
            raise _unmasked(exc) from exc.__cause__

    async def aclose(self) -> None:
        """Close this loop's pool (the loop closing the client); other loops' pools close with them."""
        with_loop = self._by_loop.pop(asyncio.get_running_loop(), None)
        if with_loop is not None:
            await with_loop.aclose()

    async def __aenter__(self) -> PerLoopTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _unmasked(exc: Exception) -> Exception:
    """The transport maps every ``aiohttp.ClientConnectionError`` to a *timeout* (a reset connection or a
    refused one would be counted and reported as ``APITimeoutError``): give those back their kind."""
    import aiohttp

    cause = exc.__cause__
    if not isinstance(cause, aiohttp.ClientConnectionError) or isinstance(cause, asyncio.TimeoutError):
        return exc
    httpx = sys.modules[type(exc).__module__.split(".")[0]]  # httpx2 (openai >= 3) or httpx
    if not isinstance(exc, httpx.TimeoutException):
        return exc
    kind = httpx.ConnectError if isinstance(cause, aiohttp.ClientConnectorError) else httpx.ReadError
    return kind(str(exc) or type(cause).__name__)  # type: ignore[no-any-return]


#: The TLS context of the first client this process built (the SDK's defaults, CA bundle loaded), reused.
_TLS: ssl.SSLContext | None = None


def http_client() -> Any | None:
    """A fresh ``openai.DefaultAioHttpClient`` with a per-loop pool, or None (SDK default) without aiohttp.

    One per model client: every role and row using that model shares its connections. They share one TLS
    context too (:data:`_TLS`): building one loads the CA bundle, ~17 ms, which each ``--workers`` process
    paid again for its clients before its first row."""
    global _TLS
    factory = getattr(openai, "DefaultAioHttpClient", None)
    if factory is None:  # an SDK older than the aiohttp transport
        return None
    try:
        client = factory() if _TLS is None else factory(verify=_TLS)
    except RuntimeError:  # "you must have installed the package with the `aiohttp` extra"
        return None
    if _TLS is None:
        _TLS = getattr(client._transport, "ssl_context", None)
    client._transport = PerLoopTransport(client._transport)
    client._mounts = {k: (PerLoopTransport(t) if t is not None else None) for k, t in client._mounts.items()}
    return client


_JSON_SCALARS = (str, int, float, bool, type(None))
#: ``chat.completions.create`` keywords that are request options, not body fields.
_OPTION_KEYS = {"extra_headers": "headers", "extra_query": "params", "timeout": "timeout"}


def _json_native(value: Any, depth: int = 0) -> bool:
    """Plain JSON values only (what the SDK's request transform leaves as they are)."""
    if isinstance(value, _JSON_SCALARS):
        return True
    if depth > 12:
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_native(v, depth + 1) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_json_native(v, depth + 1) for v in value)
    return False


class _ChatCompletions:
    """``chat.completions`` whose ``create`` posts a JSON-native body as is (see :class:`JsonBodyClient`)."""

    def __init__(self, sdk: Any) -> None:
        self._sdk = sdk
        self._resource = sdk.chat.completions
        #: Set by :meth:`JsonBodyClient.post_directly`: bodies go through the SDK's aiohttp session.
        self.direct: DirectChatPost | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resource, name)

    async def create(self, **kwargs: Any) -> Any:
        given = {k: v for k, v in kwargs.items() if not isinstance(v, openai.NotGiven | _OMIT)}
        options = {_OPTION_KEYS[k]: given.pop(k) for k in list(given) if k in _OPTION_KEYS}
        extra = given.pop("extra_body", None) or {}
        body = {**given, **extra}
        if given.get("stream") or not _json_native(body):
            return await self._resource.create(**kwargs)
        if self.direct is not None and options.keys() <= {"timeout"}:
            return parse_completion(await self.direct.post(body, options.get("timeout", openai.NOT_GIVEN)))
        raw = await self._sdk.post("/chat/completions", body=body, cast_to=bytes, options=options)
        return parse_completion(raw)


def parse_completion(raw: bytes) -> Any:
    """A ``ChatCompletion`` from a reply body: validated in one pass by pydantic-core when it conforms, else
    built field by field without validation, as the SDK builds every reply (``construct``), so a server
    that leaves out a field or sends a finish reason of its own still works. The SDK's path walks the
    parsed JSON in Python for each nested model: ~120 us of CPU for a one-choice reply against ~8 us."""
    from openai.types.chat import ChatCompletion

    try:
        return ChatCompletion.model_validate_json(raw)
    except pydantic.ValidationError:
        return ChatCompletion.construct(**json.loads(raw))


class _Chat:
    def __init__(self, sdk: Any) -> None:
        self._chat = sdk.chat
        self.completions = _ChatCompletions(sdk)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chat, name)


class JsonBodyClient:
    """An ``AsyncOpenAI`` whose ``chat.completions.create`` skips the SDK's request transform.

    The SDK walks every request body against its TypedDicts (``_async_transform_recursive``: each message
    is checked against every message type) to rename aliased keys and encode files and dates. The chat
    request parameters have none of those, and the messages autogen builds are plain JSON: measured
    ~0.3 ms of CPU per call for an identity transform, ~15 % of a call's client CPU. For a JSON-native,
    non-streaming body this posts it with the SDK's public ``post`` (same URL, headers, auth, retries
    and response parsing), or, after :meth:`post_directly`, straight through the SDK client's aiohttp
    session (:mod:`synth.models.direct_post`); anything else takes the SDK's own path. Every other
    attribute is the SDK's.
    """

    def __init__(self, sdk: Any) -> None:
        self._sdk = sdk
        self.chat = _Chat(sdk)

    def post_directly(self, max_reply_bytes: int) -> bool:
        """Send chat bodies straight through the SDK client's aiohttp session where that sends what the SDK
        would (:mod:`synth.models.direct_post`); True when it does."""
        self.chat.completions.direct = DirectChatPost.for_sdk(self._sdk, max_reply_bytes)
        return self.chat.completions.direct is not None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sdk, name)


_OMIT: type = getattr(openai, "Omit", openai.NotGiven)
