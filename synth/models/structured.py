"""Structured output on any OpenAI-compatible server: three modes, set per model or detected.

- ``json_schema``: the reply is constrained by ``response_format: {type: json_schema}`` (vLLM, SGLang,
  OpenAI, recent llama.cpp server);
- ``json_object``: ``response_format: {type: json_object}`` plus the schema in the instructions;
- ``prompt``: nothing but the instructions: the schema is appended to the system message and the JSON
  object is cut out of the reply (code fences and chatter around it dropped); the role's repair turn
  handles a reply that still does not validate (``transformers serve`` ignores ``response_format``).

The mode comes from the spec (``openai:MODEL@URL?structured=prompt``), from ``synth check`` / the run's
preflight (:mod:`synth.models.preflight`), or, in ``json_schema`` mode, from the first reply: a reply that
is not JSON at all means the server ignored ``response_format``; the client logs one line, switches to
``prompt`` for the rest of the run and asks again. The mode of each call lands in its step
(``meta.structured``) through :data:`synth.recording.MODE_SINK`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Literal

from autogen_core.models import CreateResult, SystemMessage
from pydantic import BaseModel

from synth.models.forwarding import ClientView
from synth.recording import MODE_SINK

MODES = ("json_schema", "json_object", "prompt")
Mode = Literal["json_schema", "json_object", "prompt"]
IGNORED = "server ignored response_format"
MISSES_TO_FALL_BACK = 2
INSTRUCTION = (
    "Reply with only a JSON object (no prose, no code fence) that matches this JSON schema:\n{schema}"
)

log = logging.getLogger("synth.structured")


def extract_json(text: str) -> str | None:
    """The first JSON object in ``text`` (inside a code fence or prose), as text; None when there is none."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start >= 0:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return text[start:end]
        start = text.find("{", end)
    return None


def is_json_object(text: Any) -> bool:
    if not isinstance(text, str):
        return False
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def with_schema(messages: Sequence[Any], model: type[BaseModel]) -> list[Any]:
    """``messages`` with the schema instruction appended to the system message (or a new one first)."""
    schema = json.dumps(model.model_json_schema(), separators=(",", ":"))
    note = INSTRUCTION.format(schema=schema)
    out = list(messages)
    for i, message in enumerate(out):
        if isinstance(message, SystemMessage):
            out[i] = SystemMessage(content=f"{message.content}\n\n{note}")
            return out
    return [SystemMessage(content=note), *out]


class StructuredClient(ClientView):
    """Wraps an OpenAI-compatible client; applies :attr:`mode` to structured calls (``json_output`` a
    pydantic model). Everything else is the wrapped client's (``__getattr__``)."""

    def __init__(self, inner: Any, mode: Mode | None = None, *, spec: str = "") -> None:
        super().__init__(inner)
        #: None: not set nor detected yet; starts as json_schema and may fall back once.
        self.mode: Mode | None = mode
        self._spec = spec
        #: Conversations (their first two messages) whose reply was not a JSON object: a repair turn of
        #: the same call is the same conversation, and one model's mistake twice is no server fault.
        self._missed: set[int] = set()

    async def create(self, messages: Sequence[Any], **kwargs: Any) -> CreateResult:
        model = kwargs.get("json_output")
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return await self.inner.create(messages, **kwargs)
        mode = self.mode or "json_schema"
        fallback = False
        result = await self._call(mode, messages, model, kwargs)
        if self.mode is None and result.finish_reason != "length":
            # A server that honours json_schema answers with a JSON object; a reply cut by max_tokens says
            # nothing either way, and one malformed reply may be the model's: the repair turn handles it.
            # Two different calls answered with no JSON object, before any JSON object, mean the server
            # ignores response_format.
            if is_json_object(result.content):
                self.mode = "json_schema"
            else:
                self._missed.add(hash(tuple(str(getattr(m, "content", m)) for m in messages[:2])))
            if len(self._missed) >= MISSES_TO_FALL_BACK and self.mode is None:
                log.warning(
                    "%s: %s (%d calls answered with no JSON object); structured output falls back to "
                    "mode 'prompt' (schema in the instructions) for this run; ?structured=prompt or the "
                    "preflight of `synth run` sets it up front",
                    self._spec,
                    IGNORED,
                    len(self._missed),
                )
                self.mode = mode = "prompt"
                result = await self._call(mode, messages, model, kwargs)
                fallback = True
        sink = MODE_SINK.get()
        if sink is not None:
            sink["mode"] = mode
            if fallback:
                sink["note"] = f"{IGNORED}; mode prompt"
        return result

    async def _call(
        self, mode: Mode, messages: Sequence[Any], model: type[BaseModel], kwargs: Mapping[str, Any]
    ) -> CreateResult:
        if mode == "json_schema":
            return await self.inner.create(messages, **kwargs)
        extra = dict(kwargs.get("extra_create_args") or {})
        extra.pop("response_format", None)
        if mode == "json_object":
            extra["response_format"] = {"type": "json_object"}
        args = {**kwargs, "json_output": None, "extra_create_args": extra}
        result: CreateResult = await self.inner.create(with_schema(messages, model), **args)
        if isinstance(result.content, str) and not is_json_object(result.content):
            found = extract_json(result.content)
            if found is not None:
                result = result.model_copy(update={"content": found})
        return result

    async def create_stream(self, messages: Sequence[Any], **kwargs: Any) -> AsyncGenerator[Any, None]:
        """Plain and json_schema streams go through chunk by chunk; other modes rewrite the request and
        extract the JSON from the whole reply, so they answer with one final result."""
        model = kwargs.get("json_output")
        structured = isinstance(model, type) and issubclass(model, BaseModel)
        if not structured or self.mode in (None, "json_schema"):
            async for chunk in self.inner.create_stream(messages, **kwargs):
                yield chunk
            return
        yield await self.create(messages, **kwargs)
