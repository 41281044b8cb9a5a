"""OpenAI and OpenAI-compatible servers (vLLM, SGLang, llama.cpp) through autogen-ext's client.

Three adjustments to the stock ``OpenAIChatCompletionClient``:

* the ``openai`` SDK's own retries are off (``max_retries=0``): :class:`ManagedClient` retries, in one
  place, with accounting — two stacked retry loops would multiply attempts and hide failures;
* model names autogen doesn't know (anything served by vLLM) get a default ``model_info``;
* structured output (``json_output=SomeModel``) is sent as a ``response_format`` JSON schema on the plain
  ``chat.completions.create`` path instead of ``beta...parse``. The wire request is the same, but
  ``parse`` validates client-side and raises on malformed JSON (losing the raw text) or on
  ``finish_reason == "length"``; roles validate themselves, keep the raw text, and send a repair turn;
* a reply is cut before the first ``stop`` string the request sent, as the OpenAI API defines it: some
  servers (``transformers serve``) return the matched stop string and what follows it in the same token.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import AsyncGenerator, Mapping, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from autogen_core.models import CreateResult, LLMMessage, ModelInfo, validate_model_info
from autogen_ext.models.openai import OpenAIChatCompletionClient
from pydantic import BaseModel

from synth.errors import ModelSpecError
from synth.models.base import CAPABLE_MODEL_INFO
from synth.models.call_slot import install_slot_hooks
from synth.models.managed import ClientOptions
from synth.models.reply_guard import install_reply_guard
from synth.models.transport import JsonBodyClient, http_client

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
#: What vLLM/SGLang users pass when the server has no ``--api-key``.
DUMMY_KEY = "EMPTY"

#: For model names autogen doesn't know (anything served by vLLM).
DEFAULT_MODEL_INFO = CAPABLE_MODEL_INFO


def is_private_url(base_url: str) -> bool:
    """True for loopback, private-network, link-local and single-label hosts (``localhost``, ``vllm``)."""
    host = (urlsplit(base_url).hostname or "").lower()
    if not host:
        return False
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal", ".lan")) or "." not in host:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local


def resolve_api_key(base_url: str | None, api_key_env: str | None = None) -> str:
    """The key from ``api_key_env`` (default ``OPENAI_API_KEY``); a dummy for unauthenticated local hosts."""
    env = api_key_env or DEFAULT_KEY_ENV
    key = os.environ.get(env, "").strip()
    if key:
        return key
    if api_key_env:
        raise ModelSpecError(f"The environment variable {env} (named by api_key_env) is not set or empty.")
    if base_url and is_private_url(base_url):
        return DUMMY_KEY
    where = base_url or "api.openai.com"
    raise ModelSpecError(
        f"No API key for {where}: set the environment variable {env}, or name another variable with "
        f"ClientOptions(api_key_env=...). For a self-hosted server without authentication on a public "
        f"address, set {env}={DUMMY_KEY}."
    )


def resolve_model_info(model: str, overrides: Mapping[str, Any] | None = None) -> ModelInfo:
    """autogen's info for known OpenAI names, else :data:`DEFAULT_MODEL_INFO`; then ``overrides``."""
    try:
        from autogen_ext.models.openai import _model_info

        info: dict[str, Any] = dict(_model_info.get_info(model))
    except (ValueError, KeyError, ImportError):
        info = dict(DEFAULT_MODEL_INFO)
    unknown = set(overrides or {}) - set(ModelInfo.__annotations__)
    if unknown:
        raise ModelSpecError(
            f"Unknown model_info keys {sorted(unknown)}; allowed: {sorted(ModelInfo.__annotations__)}."
        )
    info.update(overrides or {})
    validate_model_info(info)  # type: ignore[arg-type]
    return info  # type: ignore[return-value]


@lru_cache(maxsize=256)
def schema_response_format(model: type[BaseModel]) -> dict[str, Any]:
    """The ``response_format`` that ``beta.chat.completions.parse`` would send for ``model`` (built once
    per model: pydantic's schema generation costs ~0.3 ms, on every structured call otherwise).
    Callers must not mutate the returned dict."""
    try:
        from openai.lib._parsing._completions import type_to_response_format_param

        return dict(type_to_response_format_param(model))  # type: ignore[arg-type]
    except ImportError:  # private helper moved: a non-strict schema is still valid for every server
        schema = {"name": model.__name__, "schema": model.model_json_schema(), "strict": False}
        return {"type": "json_schema", "json_schema": schema}


def cut_at_stop(result: CreateResult, stop: Any) -> CreateResult:
    """``result`` with its text cut before the first of the ``stop`` strings (a string or a list), and the
    blank lines before it; unchanged when none occurs (servers that honour the API never return one)."""
    stops = [stop] if isinstance(stop, str) else [s for s in (stop or ()) if isinstance(s, str) and s]
    if not stops or not isinstance(result.content, str):
        return result
    cuts = [i for i in (result.content.find(s) for s in stops) if i >= 0]
    if not cuts:
        return result
    return result.model_copy(update={"content": result.content[: min(cuts)].rstrip("\n")})


class SynthOpenAIChatCompletionClient(OpenAIChatCompletionClient):
    """``OpenAIChatCompletionClient`` that returns structured output as unvalidated text (see module doc)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client = JsonBodyClient(self._client)  # type: ignore[assignment]

    def _structured(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """A call's arguments with a pydantic ``json_output`` sent as a ``response_format`` schema."""
        json_output = kwargs.get("json_output")
        if not (isinstance(json_output, type) and issubclass(json_output, BaseModel)):
            return dict(kwargs)
        if self.model_info.get("structured_output", False):
            extra = {
                **kwargs.get("extra_create_args", {}),
                "response_format": schema_response_format(json_output),
            }
            return {**kwargs, "json_output": None, "extra_create_args": extra}
        # No schema support (some llama.cpp builds): fall back to JSON mode or plain text; the role validates.
        return {**kwargs, "json_output": True if self.model_info.get("json_output", False) else None}

    async def create(self, messages: Sequence[LLMMessage], **kwargs: Any) -> CreateResult:
        kwargs = self._structured(kwargs)
        result = await super().create(messages, **kwargs)
        return cut_at_stop(result, (kwargs.get("extra_create_args") or {}).get("stop"))

    def create_stream(
        self, messages: Sequence[LLMMessage], **kwargs: Any
    ) -> AsyncGenerator[str | CreateResult, None]:
        return super().create_stream(messages, **self._structured(kwargs))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self._create_args.get('model')!r})"


def build_openai_client(
    model: str, base_url: str | None, options: ClientOptions, *, logprobs: str | None = None
) -> SynthOpenAIChatCompletionClient:
    """The inner client for ``openai:MODEL[@BASE_URL][?logprobs=vllm]`` (the key is read here and never
    stored elsewhere). With ``logprobs="vllm"`` it also scores text (:mod:`synth.models.openai_logprobs`)."""
    kwargs: dict[str, Any] = {
        "model": model,
        "api_key": resolve_api_key(base_url, options.api_key_env),
        "model_info": resolve_model_info(model, options.model_info),
        "max_retries": 0,
        # The SDK's own timeout is a backstop; ManagedClient enforces options.timeout_s per attempt.
        "timeout": (options.timeout_s + 5.0) if options.timeout_s else None,
    }
    if base_url:
        kwargs["base_url"] = base_url
    kwargs.update(options.backend_options)
    # The aiohttp transport costs less than half the client CPU per call, but aiohttp refuses a URL with
    # credentials (user:password@) beside the SDK's Authorization header: such a URL keeps httpx.
    if "http_client" not in kwargs and not urlsplit(base_url or "").username:
        kwargs["http_client"] = http_client()
    if logprobs == "vllm":
        from synth.models.openai_logprobs import VllmScoringClient

        client: SynthOpenAIChatCompletionClient = VllmScoringClient(**kwargs)
    else:
        client = SynthOpenAIChatCompletionClient(**kwargs)
    install_reply_guard(client, options.max_reply_bytes)  # garbage 200s and oversized replies
    install_slot_hooks(client)  # after the guard: a slot is held until the reply body has been read
    # Chat bodies skip the SDK's request building where that changes nothing on the wire (both checks
    # above are made on that path too): a sixth of a call's CPU.
    client._client.post_directly(options.max_reply_bytes)  # type: ignore[union-attr]
    return client
