"""``synth check MODEL_SPEC`` and the preflight of ``synth run``: is this OpenAI-compatible endpoint usable?

A run against a wrong URL or an unknown model used to write every row as failed after minutes of
retries. The check answers in seconds, with plain HTTP (no retries, no SDK):

1. reachability and the model list (``GET /models``): an unreachable server or a model it does not serve
   fails at once (:class:`PreflightError`, naming the URL with any credentials cut out);
2. one tiny structured call: which structured-output mode the server honours (``json_schema``, else
   ``json_object``, else ``prompt``; see :mod:`synth.models.structured`) and its latency;
3. for ``?logprobs=vllm`` specs, whether the server returns ``prompt_logprobs`` (ATM needs them);
4. four tiny calls at once: whether the server runs requests in parallel, hence a suggested ``--max-calls``.

Only (1) and a logprobs spec without logprobs are fatal; a slow or failing probe call is a note.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from synth.errors import SynthError
from synth.models.spec import parse_spec
from synth.models.structured import MODES, is_json_object

OPENAI_URL = "https://api.openai.com/v1"
PROBE_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "probe",
        "schema": {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}},
            "required": ["ok"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
PROBE_MESSAGES = [
    {"role": "system", "content": 'Reply with the JSON object {"ok": true} and nothing else.'},
    {"role": "user", "content": "Are you there?"},
]
PARALLEL_CALLS = 4


class PreflightError(SynthError):
    """The endpoint of a model spec cannot serve the run (unreachable, unknown model, no logprobs)."""


def safe_url(url: str) -> str:
    """``url`` without user:password and without a query string (either may carry a key)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def safe_spec(spec: str) -> str:
    parsed = parse_spec(spec)
    if parsed.backend != "openai" or not parsed.base_url:
        return str(parsed)
    return str(parsed).replace(parsed.base_url, safe_url(parsed.base_url))


@dataclass
class CheckReport:
    """What the check found; ``lines()`` is what ``synth check`` prints."""

    spec: str
    url: str = ""
    served: list[str] | None = None
    structured: str | None = None
    structured_from: str = ""
    logprobs: bool | None = None
    latency_s: float | None = None
    parallel_speedup: float | None = None
    suggested_max_calls: int | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"model spec:   {self.spec}"]
        if not self.url:
            return [*out, *self.notes]
        out.append(f"endpoint:     {self.url} reachable")
        if self.served is not None:
            out.append(f"models:       {', '.join(self.served) or '(none listed)'}")
        if self.structured:
            out.append(f"structured:   {self.structured} ({self.structured_from})")
        if self.latency_s is not None:
            out.append(f"latency:      {self.latency_s:.2f} s for a 16-token structured call")
        if self.logprobs is not None:
            out.append(f"logprobs:     {'yes (prompt_logprobs)' if self.logprobs else 'no'}")
        if self.suggested_max_calls is not None:
            speed = f"{self.parallel_speedup:.1f}x" if self.parallel_speedup else "?"
            out.append(
                f"parallel:     {PARALLEL_CALLS} calls at once ran {speed} faster than one after another; "
                f"suggested --max-calls {self.suggested_max_calls}"
            )
        return [*out, *(f"note:         {n}" for n in self.notes)]


async def check_spec(
    spec: str,
    *,
    api_key_env: str | None = None,
    timeout: float = 60.0,
    connect_timeout: float = 5.0,
    parallel: bool = True,
) -> CheckReport:
    """Check one model spec (see the module doc). Non-OpenAI specs (local, replay) need no check."""
    from synth.models.openai_client import resolve_api_key

    parsed = parse_spec(spec)
    report = CheckReport(spec=safe_spec(spec))
    if parsed.backend != "openai":
        report.notes.append(f"{parsed.backend} backend: runs in this process, nothing to check over HTTP")
        return report
    base = parsed.base_url or OPENAI_URL
    report.url = safe_url(base)
    headers = {"Authorization": f"Bearer {resolve_api_key(parsed.base_url, api_key_env)}"}
    limits = httpx.Timeout(timeout, connect=connect_timeout)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=limits) as http:
        await _models(http, parsed.model, report, spec)
        await _structured(http, parsed.model, parsed.structured, report, timeout)
        if parsed.logprobs:
            await _logprobs(http, parsed.model, report, spec)
        if parallel and report.latency_s is not None:
            await _parallel(http, parsed.model, report)
    return report


def _fail(report: CheckReport, spec: str, why: str) -> PreflightError:
    return PreflightError(f"{why}. Check the server and the spec with `synth check '{safe_spec(spec)}'`.")


async def _models(http: httpx.AsyncClient, model: str, report: CheckReport, spec: str) -> None:
    try:
        reply = await http.get("/models", timeout=httpx.Timeout(15.0, connect=5.0))
    except httpx.HTTPError as exc:
        raise _fail(
            report, spec, f"cannot reach {report.url} ({type(exc).__name__}: {exc or 'no reply'})"
        ) from None
    if reply.status_code in (401, 403):
        raise _fail(report, spec, f"{report.url} refused the API key (HTTP {reply.status_code})")
    if reply.status_code != 200:
        report.notes.append(f"GET /models answered HTTP {reply.status_code}; the model list was not checked")
        return
    try:
        served = [str(m.get("id")) for m in reply.json().get("data", [])]
    except (ValueError, AttributeError):
        report.notes.append("GET /models did not return an OpenAI model list; the model was not checked")
        return
    report.served = served
    if served and model not in served:
        raise _fail(
            report, spec, f"model '{model}' is not served by {report.url}; it serves: {', '.join(served)}"
        )


async def _structured(
    http: httpx.AsyncClient, model: str, mode: str | None, report: CheckReport, timeout: float
) -> None:
    """Try json_schema, then json_object; a server that ignores or rejects both gets ``prompt``."""
    if mode is not None:
        report.structured, report.structured_from = mode, "set in the spec"
    tries = [mode] if mode else ["json_schema", "json_object"]
    for candidate in tries:
        body: dict[str, Any] = {
            "model": model,
            "messages": PROBE_MESSAGES,
            "max_tokens": 16,
            "temperature": 0,
        }
        if candidate == "json_schema":
            body["response_format"] = PROBE_SCHEMA
        elif candidate == "json_object":
            body["response_format"] = {"type": "json_object"}
        started = time.perf_counter()
        try:
            reply = await http.post("/chat/completions", json=body)
        except httpx.TimeoutException:
            report.notes.append(
                f"a 16-token call timed out after {timeout:.0f} s waiting for the first byte; the server may "
                "be busy, slow (CPU), or generating a long reply for an abandoned request"
            )
            return
        except httpx.HTTPError as exc:
            report.notes.append(f"the probe call failed: {type(exc).__name__}: {exc}")
            return
        elapsed = time.perf_counter() - started
        if reply.status_code >= 400:
            report.notes.append(f"{candidate}: HTTP {reply.status_code} {reply.text[:200]}")
            continue
        report.latency_s = elapsed if report.latency_s is None else min(report.latency_s, elapsed)
        if mode:
            return
        if is_json_object(_content(reply)):
            report.structured, report.structured_from = candidate, "detected: the reply was a JSON object"
            return
    if not mode:
        report.structured = "prompt"
        report.structured_from = "detected: the server ignored or rejected response_format"


def _content(reply: httpx.Response) -> str:
    try:
        return str(reply.json()["choices"][0]["message"]["content"] or "")
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


async def _logprobs(http: httpx.AsyncClient, model: str, report: CheckReport, spec: str) -> None:
    body = {
        "model": model,
        "messages": PROBE_MESSAGES,
        "max_tokens": 1,
        "temperature": 0,
        "prompt_logprobs": 1,
    }
    try:
        reply = await http.post("/chat/completions", json=body)
        report.logprobs = reply.status_code == 200 and bool(reply.json().get("prompt_logprobs"))
    except (httpx.HTTPError, ValueError):
        report.logprobs = False
    if not report.logprobs:
        raise _fail(
            report,
            spec,
            f"{report.url} returned no prompt_logprobs, which ?logprobs=vllm (ATM, logprob judges) needs; "
            "serve the model with vLLM or give that role another model",
        )


async def _parallel(http: httpx.AsyncClient, model: str, report: CheckReport) -> None:
    body = {"model": model, "messages": PROBE_MESSAGES, "max_tokens": 16, "temperature": 0}

    async def one() -> None:
        (await http.post("/chat/completions", json=body)).raise_for_status()

    started = time.perf_counter()
    try:
        await asyncio.gather(*(one() for _ in range(PARALLEL_CALLS)))
    except httpx.HTTPError as exc:
        report.notes.append(f"the parallel probe failed: {type(exc).__name__}: {exc}")
        return
    wall = time.perf_counter() - started
    single = report.latency_s or wall
    # Served one after another, N calls take N x one call; served together, about one call.
    speedup = report.parallel_speedup = single * PARALLEL_CALLS / wall if wall > 0 else 1.0
    # One at a time: more calls in flight only queue (and time out) on the server.
    report.suggested_max_calls = 2 if speedup < 1.5 else max(8, int(8 * speedup))


def spec_checks(specs: dict[str, str]) -> list[str]:
    """The distinct OpenAI-compatible specs of a run (the ones a preflight checks)."""
    return [s for s in dict.fromkeys(specs.values()) if parse_spec(s).backend == "openai"]


def apply_mode(client: Any, mode: str | None) -> None:
    """Set a detected structured mode on a built client (its :class:`StructuredClient`, if it has one)."""
    from synth.models.structured import StructuredClient

    seen = 0
    while client is not None and seen < 8:
        if isinstance(client, StructuredClient):
            if client.mode is None and mode in MODES:
                client.mode = mode  # type: ignore[assignment]
            return
        client = client.__dict__.get("inner")  # the wrapped client (synth.models.forwarding)
        seen += 1


async def preflight(
    specs: dict[str, str], *, api_key_env: str | None, timeout: float, say: Callable[[str], None]
) -> dict[str, CheckReport]:
    """Check every OpenAI-compatible spec of a run; raise :class:`PreflightError` on the first fatal one."""
    reports = {}
    for spec in spec_checks(specs):
        report = await check_spec(spec, api_key_env=api_key_env, timeout=timeout, parallel=False)
        reports[spec] = report
        summary = f"{report.structured} structured output" if report.structured else "structured mode unknown"
        latency = f", {report.latency_s:.2f} s per tiny call" if report.latency_s is not None else ""
        say(
            f"preflight: {report.spec}: reachable, {summary}{latency}"
            + "".join(f"; {n}" for n in report.notes)
        )
    return reports
