"""Retry policy and accounting types of :class:`~synth.models.managed.ManagedClient`.

Kept apart from the client so the policy — what is transient, how long to wait — can be read and tested on
its own, and so the client module stays about delegation.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import openai
from pydantic import BaseModel, ConfigDict, Field, field_validator

from synth.models.base import SAMPLING_KEYS
from synth.models.reply_guard import DEFAULT_MAX_REPLY_BYTES, GarbageReplyError


class ClientOptions(BaseModel):
    """Operational options for one model client. Holds no secrets: only the *name* of the key variable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_concurrency: int = Field(default=16, ge=1, description="calls in flight at once, across all rows")
    adaptive: bool = Field(
        default=False, description="AIMD: grow while latency holds, halve on 429; capped by max_concurrency"
    )
    timeout_s: float | None = Field(default=120.0, gt=0, description="per attempt; None = no limit")
    max_retries: int = Field(default=5, ge=0, description="retries after the first attempt")
    backoff_base_s: float = Field(
        default=0.5, ge=0, description="first backoff; doubles each retry, jittered"
    )
    backoff_max_s: float = Field(default=30.0, ge=0)
    retry_after_max_s: float = Field(default=120.0, ge=0, description="cap on a server's Retry-After")
    max_reply_bytes: int = Field(
        default=DEFAULT_MAX_REPLY_BYTES, ge=1, description="cap on one reply body (HTTP backends)"
    )
    sampling: dict[str, Any] = Field(default_factory=dict, description="defaults; per-call values win")
    api_key_env: str | None = Field(
        default=None, description="env var with the API key (default OPENAI_API_KEY)"
    )
    model_info: dict[str, Any] = Field(default_factory=dict, description="overrides of autogen's ModelInfo")
    backend_options: dict[str, Any] = Field(
        default_factory=dict, description="extra backend constructor kwargs"
    )

    @field_validator("sampling")
    @classmethod
    def _known_sampling(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = set(value) - set(SAMPLING_KEYS)
        if unknown:
            raise ValueError(
                f"unknown sampling keys {sorted(unknown)}; every backend understands {SAMPLING_KEYS}"
            )
        return value


@dataclass(frozen=True)
class ClientStats:
    """A snapshot of one client's accounting. ``errors`` counts failed attempts by exception type."""

    calls: int = 0
    ok: int = 0
    failed: int = 0
    cancelled: int = 0
    attempts: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    backoff_s: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0
    cache_hits: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)

    @property
    def mean_latency_s(self) -> float:
        """Mean duration of the successful attempt of each successful call."""
        return self.latency_s / self.ok if self.ok else 0.0


def is_retryable(exc: BaseException) -> bool:
    """Transient: 408/429/5xx, HTTP 200 that is not a completion, connection errors and timeouts.
    Not retried: other 4xx, quota exhaustion, a reply over the size limit."""
    if isinstance(exc, GarbageReplyError):
        return True
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 429:
            return getattr(exc, "code", None) != "insufficient_quota"  # retrying cannot refill a quota
        return exc.status_code >= 500 or exc.status_code == 408
    return isinstance(exc, openai.APIConnectionError | TimeoutError | ConnectionError)


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` (delta-seconds or HTTP-date), if present."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000.0)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def is_overload(exc: BaseException) -> bool:
    """The backend says it is saturated (429 rate limit, 503 unavailable): fewer calls would help."""
    return isinstance(exc, openai.APIStatusError) and exc.status_code in (429, 503)


def backoff_s(options: ClientOptions, exc: BaseException, attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): the server's ``Retry-After`` (capped),
    else "equal jitter" — half of an exponentially growing ceiling fixed, half random: never ~0, yet
    decorrelated across the rows that failed together."""
    hinted = retry_after_s(exc)
    if hinted is not None:
        return min(hinted, options.retry_after_max_s)
    ceiling = min(options.backoff_max_s, options.backoff_base_s * 2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)
