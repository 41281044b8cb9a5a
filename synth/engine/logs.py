"""Structured run logs (``runs/NAME/log.jsonl``) and secret redaction.

A run folder must be shareable: it is what people attach to a bug report or copy next to a dataset. So
nothing that lands in it may carry a credential. Keys are only read from the environment and only sent
in HTTP headers, but error messages are another matter: some servers echo the key they were given
("Incorrect API key provided: sk-..."). :func:`redact` replaces the value of every secret-looking
environment variable before text is logged or stored, and the credentials a URL may carry
(``http://user:PASSWORD@host``, ``?api_key=...``): :func:`redact_urls`.

The log is one JSON object per line (``ts``, ``event`` and fields), appended across runs of the folder:
``run_start``, ``row_failed`` (id, source, error kind), ``run_end`` (counts, usage, rows/s, per-client
retries, errors by type, cache hits). Line-buffered writes: a killed run's log ends at its last event.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from synth.trajectory import utc_now

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
#: Shorter values are not treated as secrets: "EMPTY", "none", "1" would redact ordinary words.
MIN_SECRET_LEN = 8
REDACTED = "***"
#: ``scheme://user:password@``: the password is a credential (the user name stays, it helps debugging).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^/\s:@?#]*:)(?P<secret>[^/\s@?#]+)(?=@)", re.I)
#: ``scheme://TOKEN@`` without a colon: a bare token as the user name (``https://ghp_...@github.com``).
_URL_TOKEN_USER = re.compile(r"(?P<head>\b[a-z][a-z0-9+.\-]*://)(?P<secret>[^/\s:@?#]{16,})(?=@)", re.I)
#: Query parameters that carry credentials (``?api_key=``, ``&token=``, ``sig=`` ...).
_URL_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;](?:api[_-]?key|apikey|key|token|access[_-]?token|auth|secret|client[_-]?secret|"
    r"password|passwd|pwd|sig|signature|x-api-key)=)(?P<secret>[^&#\s\"'<>]+)",
    re.I,
)
_URL_PATTERNS = (_URL_PASSWORD, _URL_TOKEN_USER, _URL_QUERY_SECRET)


def secret_values(extra_env: str | None = None) -> list[str]:
    """Values of secret-looking env vars (and of ``extra_env``), longest first so none hides another."""
    values = {
        value
        for name, value in os.environ.items()
        if (_SECRET_NAME.search(name) or name == extra_env) and len(value.strip()) >= MIN_SECRET_LEN
    }
    return sorted(values, key=len, reverse=True)


def url_secrets(text: str) -> list[str]:
    """Credentials embedded in URLs in ``text`` (passwords, token user names, secret query values)."""
    if "://" not in text and "=" not in text:
        return []
    found = [m.group("secret") for pattern in _URL_PATTERNS for m in pattern.finditer(text)]
    return [value for value in found if value != REDACTED]


def redact_urls(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***`` (the rest of the URL stays)."""
    if "://" not in text and "=" not in text:
        return text
    for pattern in _URL_PATTERNS:
        text = pattern.sub(lambda m: m.group("head") + REDACTED, text)
    return text


def redact(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with every secret value, and every credential in a URL, replaced by ``***``."""
    for secret in secret_values() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return redact_urls(text)


def redact_error(exc: BaseException, history: list[str]) -> None:
    """Cut secrets from an exception's message (and an attempt history) in place.

    Used by the model client, where every backend error passes: a server that quotes the key it was sent
    would otherwise carry it into steps, checkpoints, records and logs."""
    secrets = secret_values()
    texts = [str(exc), *history]
    if not any(s in t for t in texts for s in secrets) and not any(url_secrets(t) for t in texts):
        return
    exc.args = tuple(redact(a, secrets) if isinstance(a, str) else a for a in exc.args)
    if isinstance(getattr(exc, "message", None), str):
        exc.message = redact(exc.message, secrets)  # type: ignore[attr-defined]
    history[:] = [redact(h, secrets) for h in history]


def error_kind(error: str | None, source: str = "") -> str:
    """A short, groupable kind for a stored error: ``input``, ``<role>: <reason> (<Type>)`` or ``<Type>``.

    Role failures read ``role 'judge' failed (validation): ValueError: ...`` (see ``synth.graph.failed``),
    runner failures ``Type: message <- caused by ...``, input errors start with the row's ``file:line``.
    """
    if not error:
        return "unknown"
    if source and error.startswith(source):
        return "input"
    role = re.match(r"role '([^']+)' failed \(([^)]*)\): (\w+)", error)
    if role:
        return f"{role.group(1)}: {role.group(2)} ({role.group(3)})"
    head = re.match(r"([A-Za-z_][\w.]*)(?::|$)", error)
    return head.group(1) if head else "other"


class RunLog:
    """Appends JSON events to ``log.jsonl``; every line is redacted. A context manager."""

    def __init__(self, path: Path | str, *, api_key_env: str | None = None) -> None:
        self.path = Path(path)
        self._secrets = secret_values(api_key_env)
        self._handle: TextIO | None = self.path.open("a", encoding="utf-8", buffering=1)

    def event(self, name: str, **fields: Any) -> None:
        if self._handle is None:
            return
        line = json.dumps({"ts": utc_now(), "event": name, **fields}, default=str, ensure_ascii=False)
        self._handle.write(redact(line, self._secrets) + "\n")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_events(path: Path | str, event: str | None = None) -> Iterator[dict[str, Any]]:
    """Events of a log file (optionally one kind), skipping a torn last line of a killed run."""
    path = Path(path)
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event is None or item.get("event") == event:
                yield item
