"""Model spec strings -> managed AutoGen clients.

One string selects a backend so that configs, CLI flags (``--model judge=openai:gpt-4o``) and provenance
records all speak the same language; options (concurrency, retries, sampling) travel separately in
:class:`~synth.models.managed.ClientOptions`, never inside the string.

A base URL may carry credentials (``http://user:PASSWORD@host/v1``). They are used for the HTTP call only:
``str(spec)``, the form every config, log, record, card and cache key gets, has them replaced by ``***``
(:func:`public_spec`), and a spec that still reads ``***`` is refused rather than sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict

from synth.engine.logs import REDACTED, redact_urls
from synth.errors import ModelSpecError
from synth.models.managed import ClientOptions, ManagedClient

Backend = Literal["openai", "local", "replay"]
#: Ways an OpenAI-compatible server can score text: ``vllm`` = chat completions with vLLM's
#: ``prompt_logprobs`` and ``continue_final_message`` extensions (see :mod:`synth.models.openai_logprobs`).
LogprobsMode = Literal["vllm"]
LOGPROBS_MODES = ("vllm",)

ACCEPTED_FORMS = (
    "openai:MODEL                      e.g. openai:gpt-4o-mini (api.openai.com, key in OPENAI_API_KEY)\n"
    "  openai:MODEL@BASE_URL             e.g. openai:Qwen/Qwen2.5-7B-Instruct@http://localhost:8000/v1 "
    "(vLLM, SGLang, llama.cpp server...)\n"
    "  openai:MODEL@BASE_URL?logprobs=vllm  the same, scoring text by vLLM's prompt_logprobs (ATM, judges)\n"
    "  openai:MODEL@BASE_URL?structured=prompt  structured output mode: json_schema (default, detected), "
    "json_object or prompt\n"
    "  local:NAME | local:/path/to/folder e.g. local:gemma-3-270m (embedded model, CPU)\n"
    "  replay:FILE.jsonl                 scripted replies, one per line (tests)"
)


class ModelSpec(BaseModel):
    """A parsed spec. ``str(spec)`` gives the canonical spec string back, credentials redacted (used in
    provenance); ``base_url`` keeps the real URL for the HTTP client."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Backend
    model: str
    base_url: str | None = None
    path: Path | None = None
    #: How an OpenAI-compatible server scores given text (``?logprobs=vllm``); None: it cannot.
    logprobs: LogprobsMode | None = None
    #: Structured-output mode (``?structured=json_schema|json_object|prompt``); None: detected.
    structured: str | None = None

    def __str__(self) -> str:
        if self.backend == "openai":
            where = f"@{redact_urls(self.base_url)}" if self.base_url else ""
            pairs = [("logprobs", self.logprobs), ("structured", self.structured)]
            query = "&".join(f"{k}={v}" for k, v in pairs if v)
            return f"openai:{self.model}{where}{'?' + query if query else ''}"
        if self.backend == "replay":
            return f"replay:{self.path}"
        return f"{self.backend}:{self.model}"


def _bad(spec: str, why: str) -> ModelSpecError:
    return ModelSpecError(
        f"Bad model spec {redact_urls(spec)!r}: {why}.\nAccepted forms:\n  {ACCEPTED_FORMS}"
    )


def public_spec(spec: str) -> str:
    """``spec`` as it may be written anywhere: parsed and printed back, URL credentials as ``***``."""
    return str(parse_spec(spec))


def _looks_like_path(value: str) -> bool:
    return value.startswith((".", "/", "~")) or "/" in value or "\\" in value


def _query_options(spec: str, query: str) -> tuple[LogprobsMode | None, str | None]:
    """The ``?logprobs=vllm&structured=MODE`` suffix of an openai spec."""
    from synth.models.structured import MODES

    if not query:
        return None, None
    try:
        options = dict(parse_qsl(query, strict_parsing=True))
    except ValueError:
        raise _bad(spec, f"the options after '?' must look like logprobs=vllm, not {query!r}") from None
    unknown = sorted(set(options) - {"logprobs", "structured"})
    if unknown:
        raise _bad(
            spec,
            f"unknown option {', '.join(unknown)} after '?' (known: logprobs, structured; an API key goes "
            "in an environment variable named by --api-key-env, never in the spec)",
        )
    mode = options.get("logprobs")
    if mode is not None and mode not in LOGPROBS_MODES:
        raise _bad(spec, f"logprobs={mode} is not supported; use logprobs=vllm")
    structured = options.get("structured")
    if structured is not None and structured not in MODES:
        raise _bad(spec, f"structured={structured} is not a mode; use one of {', '.join(MODES)}")
    return mode, structured  # type: ignore[return-value]


def parse_spec(spec: str) -> ModelSpec:
    """Parse ``backend:rest``. Raises :class:`~synth.errors.ModelSpecError` showing the accepted forms."""
    if not isinstance(spec, str) or not spec.strip():
        raise _bad(str(spec), "it is empty")
    text = spec.strip()
    backend, sep, rest = text.partition(":")
    backend = backend.lower()
    if not sep:
        raise _bad(spec, "it has no backend prefix (did you mean openai:" + text + "?)")
    if backend not in ("openai", "local", "replay"):
        raise _bad(spec, f"unknown backend {backend!r}")
    if not rest.strip():
        raise _bad(spec, f"nothing follows '{backend}:'")
    rest = rest.strip()
    if backend == "openai":
        rest, _, query = rest.partition("?")
        logprobs, structured = _query_options(spec, query)
        model, base_url = rest, None
        for scheme in ("@http://", "@https://"):
            at = rest.find(scheme)
            if at >= 0:
                model, base_url = rest[:at], rest[at + 1 :]
                break
        else:
            if "@" in rest:
                raise _bad(spec, "the part after '@' must be a URL starting with http:// or https://")
        if not model:
            raise _bad(spec, "the model name is empty")
        if base_url is not None:
            parts = urlsplit(base_url)
            if not parts.hostname:
                raise _bad(spec, "the base URL has no host")
            if parts.password == REDACTED or parts.username == REDACTED:
                raise _bad(
                    spec,
                    "its credentials read *** (a redacted copy from a run folder or card): pass the real "
                    "URL with --model, or put the key in an environment variable (--api-key-env)",
                )
            base_url = base_url.rstrip("/")
        return ModelSpec(
            backend="openai", model=model, base_url=base_url, logprobs=logprobs, structured=structured
        )
    if backend == "local":
        if _looks_like_path(rest):
            return ModelSpec(backend="local", model=rest, path=Path(rest).expanduser())
        return ModelSpec(backend="local", model=rest)
    return ModelSpec(backend="replay", model=Path(rest).stem, path=Path(rest).expanduser())


def make_client(
    spec: str | ModelSpec,
    options: ClientOptions | None = None,
    *,
    sleep: Callable[[float], Awaitable[Any]] | None = None,
) -> ManagedClient:
    """Build the backend client for ``spec`` and wrap it with concurrency, timeout, retries and accounting.

    ``sleep`` replaces the backoff sleep (tests). Backend constructors are imported lazily, so an OpenAI
    run never imports torch and a local run never needs an API key.
    """
    parsed = spec if isinstance(spec, ModelSpec) else parse_spec(spec)
    opts = options or ClientOptions()
    inner: Any
    if parsed.backend == "openai":
        from synth.models.openai_client import build_openai_client
        from synth.models.structured import StructuredClient

        built = build_openai_client(parsed.model, parsed.base_url, opts, logprobs=parsed.logprobs)
        inner = StructuredClient(built, parsed.structured, spec=str(parsed))  # type: ignore[arg-type]
    elif parsed.backend == "replay":
        from synth.models.replay import build_replay_client

        assert parsed.path is not None
        inner = build_replay_client(parsed.path, opts)
    else:
        from synth.models.local import LocalChatCompletionClient

        inner = LocalChatCompletionClient(str(parsed.path or parsed.model), **opts.backend_options)
    return ManagedClient(inner, opts, spec=str(parsed), sleep=sleep)
