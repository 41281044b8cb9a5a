"""What an OpenAI-compatible server may send back: a completion, of bounded size. Anything else is named.

Two faults of real deployments slip past the ``openai`` SDK:

* **HTTP 200 that is not a completion** — an empty body, a proxy's HTML error page, JSON without
  ``choices``, an ``{"error": ...}`` object sent with status 200 (vLLM and gateways under load do all of
  these). The SDK returns a string or a half-empty object and the failure surfaces later as
  ``AttributeError: 'str' object has no attribute 'choices'`` — on the first attempt, never retried. Such
  a reply is a transient backend fault: :class:`GarbageReplyError` is retried like a 5xx, and when the
  retries run out its message says what came back ("server returned HTTP 200 with no choices (body
  starts: ...)").
* **Unbounded replies** — the SDK reads a whole body into memory; a 30 MB reply used 1.1 GB. Bodies of the
  completion endpoints are capped at ``ClientOptions.max_reply_bytes`` (``synth run --max-reply-bytes``):
  a larger one fails that call with :class:`ReplyTooLargeError`, which names the limit and the flag, and is
  not retried (the same request would get the same reply).

Both checks run in one ``httpx`` response hook on the SDK's HTTP client (:func:`install_reply_guard`), so
they hold whatever transport the client uses, for chat and legacy completions alike. A slow drip of bytes
is not this module's business: ``ManagedClient``'s per-call deadline covers the whole body.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any

import httpx2
import openai

#: Default cap on one reply body: far above any completion (a 32k-token reply is ~150 kB), far below
#: what hurts a worker.
DEFAULT_MAX_REPLY_BYTES = 8_000_000
FLAG = "--max-reply-bytes"
_PREVIEW = 120


class ReplyError(openai.APIError):
    """The server answered, but not with a usable completion."""

    def __init__(self, message: str, request: Any) -> None:
        super().__init__(message, request, body=None)


class GarbageReplyError(ReplyError):
    """HTTP 200 whose body is not a completion: transient, retried like a 5xx."""


class ReplyTooLargeError(ReplyError):
    """A reply body over ``max_reply_bytes``: permanent for this request, not retried."""


def too_large(url: Any, limit: int, size: int | None = None) -> str:
    got = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return (
        f"the reply from {url} is {got}, over the limit of {limit} bytes ({FLAG} {limit}); "
        f"raise it with {FLAG} N if such replies are expected"
    )


#: A completion object with a non-empty ``choices`` list: the common case is recognised without parsing the
#: body a second time (the SDK parses it right after): 0.5 us instead of 2.4 us for a 1 kB reply.
_HAS_CHOICES = re.compile(rb'^\s*\{.*?"choices"\s*:\s*\[\s*\{', re.DOTALL)


def garbage_reason(body: bytes, content_type: str) -> str | None:
    """Why ``body`` (an HTTP 200 from a completion endpoint) is not a completion, or None when it is one."""
    if _HAS_CHOICES.match(body):
        return None
    if not body.strip():
        return "server returned HTTP 200 with an empty body"
    preview = body[:_PREVIEW].decode("utf-8", "replace")
    try:
        data = json.loads(body)
    except ValueError:
        return (
            f"server returned HTTP 200 with a body that is not JSON "
            f"(content-type {content_type or 'none'}; body starts: {preview!r})"
        )
    if isinstance(data, dict) and isinstance(data.get("choices"), list) and data["choices"]:
        return None
    if isinstance(data, dict) and data.get("error"):
        return f"server returned HTTP 200 with an error instead of choices (body starts: {preview!r})"
    return f"server returned HTTP 200 with no choices (body starts: {preview!r})"


class _Capped:
    """The response's byte stream, failing once more than ``limit`` bytes have arrived."""

    def __init__(self, inner: Any, limit: int, request: Any) -> None:
        self._inner, self._limit, self._request = inner, limit, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self._inner:
            size += len(chunk)
            if size > self._limit:
                raise ReplyTooLargeError(too_large(self._request.url, self._limit), self._request)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


@lru_cache(maxsize=4)
def _capped_type(byte_stream: type) -> type:
    """:class:`_Capped` as a subclass of the response library's ``AsyncByteStream`` (httpx2 for the SDK's
    own client, httpx for a legacy client a user passes): each checks the type of ``response.stream``."""
    return type("CappedStream", (_Capped, byte_stream), {})


def _capped(response: Any, limit: int) -> Any:
    library = sys.modules.get(type(response).__module__.split(".")[0], httpx2)
    base = getattr(library, "AsyncByteStream", httpx2.AsyncByteStream)
    return _capped_type(base)(response.stream, limit, response.request)


def reply_guard(max_reply_bytes: int) -> Any:
    """The response hook: caps every completion body, and checks that a non-streamed 200 is a completion."""

    async def check(response: Any) -> None:
        request = response.request
        if not request.url.path.endswith("/completions"):
            return
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_reply_bytes:
            raise ReplyTooLargeError(too_large(request.url, max_reply_bytes, int(length)), request)
        response.stream = _capped(response, max_reply_bytes)
        content_type = response.headers.get("content-type", "")
        if response.status_code != 200 or "event-stream" in content_type:
            return  # error statuses are the SDK's to map; streams are checked chunk by chunk by the SDK
        body = await response.aread()
        reason = garbage_reason(body, content_type)
        if reason is not None:
            raise GarbageReplyError(reason, request)

    return check


def http_event_hooks(client: Any, purpose: str) -> dict[str, list[Any]]:
    """The event hooks of the ``httpx`` client under an autogen OpenAI client (``client._client`` is the SDK
    client, whose ``_client`` is the ``httpx`` client; both attributes are stable in the pinned versions);
    ``purpose`` completes the error when there is none ("cannot <purpose> of <client>")."""
    http = getattr(getattr(client, "_client", None), "_client", None)
    hooks = getattr(http, "event_hooks", None)
    if hooks is None:
        raise TypeError(f"cannot {purpose} of {type(client).__name__}: no httpx client found")
    return hooks  # type: ignore[no-any-return]


def install_reply_guard(client: Any, max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES) -> None:
    """Add the guard to the HTTP client under an autogen OpenAI client."""
    hooks = http_event_hooks(client, "guard replies")
    hooks.setdefault("response", []).append(reply_guard(max_reply_bytes))


def reply_fault(exc: BaseException) -> ReplyError | None:
    """The :class:`ReplyError` behind ``exc`` (itself, or a cause an SDK wrapped in a connection error)."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        if isinstance(current, ReplyError):
            return current
        current, seen = current.__cause__ or current.__context__, seen + 1
    return None
