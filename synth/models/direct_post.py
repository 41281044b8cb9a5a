"""A chat completion posted straight through the SDK client's own aiohttp session.

Why: for each call the ``openai`` SDK builds a ``FinalRequestOptions`` model, merges headers (auth, platform,
custom) into ``httpx2.Headers``, parses and joins URLs three times, builds an ``httpx2.Request``, walks
httpx's send/redirect/event-hook layers and wraps aiohttp's reply in an ``httpx2.Response`` read through a
byte stream. Measured on the loopback server, 64 calls in flight: ~0.69 ms of client CPU per call through
``AsyncOpenAI.post`` on the aiohttp transport against ~0.17 ms for the same POST on the same aiohttp
session (``bench/throughput.py``'s per-call figures; a sixth of an engine call's CPU).

:class:`DirectChatPost` sends the bytes the SDK would send (the SDK client's own URL, default and auth
headers, timeout, connection pool) and keeps what the SDK path gives the rest of synth:

* errors of the SDK's own classes: a status >= 400 becomes the ``APIStatusError`` subclass the SDK builds
  for it (``RateLimitError`` with its ``Retry-After`` header...), a refused or reset connection
  ``APIConnectionError``, a transport timeout ``APITimeoutError``;
* the reply guard (:mod:`synth.models.reply_guard`): the body is capped at ``max_reply_bytes`` and an HTTP
  200 that is not a completion raises ``GarbageReplyError``;
* the call slot (:mod:`synth.models.call_slot`): taken as the request leaves, given back once the body
  has been read.

It applies only where nothing else would change the request: an ``AsyncOpenAI`` (not a subclass such as
Azure's) with a plain API key (no key provider, workload identity or auth provider), no default query
parameters, on the per-loop aiohttp client synth builds, with no proxy mounted. Anything else, and any
call with per-call headers or query parameters, takes the SDK's path (:func:`DirectChatPost.for_sdk`
returns None).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import aiohttp
import httpx2
import openai

from synth.models.call_slot import CURRENT
from synth.models.reply_guard import GarbageReplyError, ReplyTooLargeError, garbage_reason, too_large

#: What ``httpx`` does with ``json=``: compact, UTF-8, no NaN (a NaN fails the call before it is sent).
_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_CHUNK = 64 * 1024


class DirectChatPost:
    """Posts ``/chat/completions`` bodies for one SDK client (see the module doc)."""

    def __init__(self, sdk: Any, transport: Any, max_reply_bytes: int) -> None:
        self._sdk = sdk
        self._transport = transport  # a synth.models.transport.PerLoopTransport
        self.url = str(sdk.base_url).rstrip("/") + "/chat/completions"
        self._headers = _sdk_headers(sdk)
        self._timeout = _client_timeout(sdk.timeout)
        self._max_reply_bytes = max_reply_bytes

    @classmethod
    def for_sdk(cls, sdk: Any, max_reply_bytes: int) -> DirectChatPost | None:
        """The direct path for ``sdk``, or None when the SDK's own path must build its requests."""
        from synth.models.transport import PerLoopTransport

        if type(sdk) is not openai.AsyncOpenAI or sdk.default_query:
            return None
        for attribute in ("_api_key_provider", "_provider_runtime", "workload_identity"):
            if getattr(sdk, attribute, None) is not None:
                return None
        http = getattr(sdk, "_client", None)
        transport = getattr(http, "_transport", None)
        if not isinstance(transport, PerLoopTransport) or transport.proxied:
            return None
        if any(mounted is not None for mounted in getattr(http, "_mounts", {}).values()):
            return None  # a proxy from the environment: httpx picks it by URL
        return cls(sdk, transport, max_reply_bytes)

    async def post(self, body: dict[str, Any], timeout: Any = openai.NOT_GIVEN) -> bytes:
        """The reply body of a completed (HTTP 2xx) exchange; the SDK's error for anything else. ``timeout``
        is the call's ``timeout`` option (autogen passes the client's on every call), else the client's."""
        data = _DUMPS(body).encode()
        client_timeout = self._timeout if isinstance(timeout, openai.NotGiven) else _client_timeout(timeout)
        slot = CURRENT.get()
        if slot is not None:
            await slot.take()
        try:
            session = self._transport.session()
            post = session.post(self.url, data=data, headers=self._headers, timeout=client_timeout)
            async with post as reply:
                raw = await self._read(reply)
                if reply.status >= 400:
                    raise self._status_error(reply, raw)
                content_type = reply.headers.get("Content-Type", "")
                reason = garbage_reason(raw, content_type) if reply.status == 200 else None
        except TimeoutError as exc:  # aiohttp's connect and read timeouts (a deadline's cancel is not one)
            raise openai.APITimeoutError(request=self._request()) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise openai.APIConnectionError(request=self._request()) from exc
        finally:
            if slot is not None:
                slot.give_back()
        if reason is not None:
            raise GarbageReplyError(reason, self._request())
        return raw

    async def _read(self, reply: aiohttp.ClientResponse) -> bytes:
        """The whole body, failing as soon as it is known to exceed ``max_reply_bytes``."""
        limit = self._max_reply_bytes
        length = reply.content_length
        if length is not None and length > limit:
            raise ReplyTooLargeError(too_large(self.url, limit, length), self._request())
        if length is not None:
            return await reply.read()
        chunks, size = [], 0
        async for chunk in reply.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise ReplyTooLargeError(too_large(self.url, limit), self._request())
            chunks.append(chunk)
        return b"".join(chunks)

    def _status_error(self, reply: aiohttp.ClientResponse, raw: bytes) -> openai.APIStatusError:
        """What the SDK raises for this status: it builds the error from an ``httpx2`` response."""
        response = httpx2.Response(
            reply.status, headers=list(reply.raw_headers), content=raw, request=self._request()
        )
        return self._sdk._make_status_error_from_response(response)  # type: ignore[no-any-return]

    def _request(self) -> httpx2.Request:
        """The request, as the SDK's errors carry it (built only when one is raised)."""
        return httpx2.Request("POST", self.url, headers=self._headers)


def _sdk_headers(sdk: Any) -> dict[str, str]:
    """The headers the SDK sends on every request: its defaults (content type, user agent, platform,
    organization/project, the client's custom headers) over its auth headers; omitted ones dropped."""
    merged = {**sdk.auth_headers, **sdk.default_headers}
    return {name: value for name, value in merged.items() if isinstance(value, str)}


@functools.lru_cache(maxsize=64)
def _client_timeout(timeout: Any) -> aiohttp.ClientTimeout:
    """A timeout as the SDK's aiohttp transport applies it (connect, read, pool); built once per value."""
    if timeout is None or isinstance(timeout, openai.NotGiven):
        return aiohttp.ClientTimeout()
    if isinstance(timeout, int | float):
        timeout = httpx2.Timeout(float(timeout))
    return aiohttp.ClientTimeout(sock_connect=timeout.connect, sock_read=timeout.read, connect=timeout.pool)
