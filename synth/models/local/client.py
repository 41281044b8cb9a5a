"""``LocalChatCompletionClient``: the embedded model as an AutoGen ``ChatCompletionClient``.

Roles and graphs talk to every backend through AutoGen's interface; this one runs a Hugging Face causal
LM in-process (by default the embedded Gemma 3 270M base model, ``local:gemma-3-270m``). Messages are
rendered with the project's plain chat template (:mod:`synth.chat_template`); ``json_output`` (a pydantic
class, a JSON-schema dict, or ``True`` for any JSON) turns on grammar-constrained decoding, so structured
outputs always parse and validate. Concurrent ``create`` calls are batched by a shared engine
(:mod:`.engine`); several clients for the same folder and dtype share one loaded model.

``extra_create_args`` understands the OpenAI sampling names (``temperature``, ``top_p``, ``max_tokens``,
``seed``, ``stop``) plus ``assistant_header`` (the generation prompt's section header, e.g. a role name).
Temperature defaults to 0 (greedy): sampling a 270M base model at 1.0 mostly yields noise. Stop strings
apply to plain-text replies only (cutting JSON would break it); plain replies also stop at the next
``\n### `` section header unless ``section_stop=False``.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Literal

from autogen_core import CancellationToken
from autogen_core.models import (
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    ModelCapabilities,
    ModelInfo,
    RequestUsage,
)
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

from synth.chat_template import SECTION_STOP, messages_to_dicts, render_prompt
from synth.models.base import SAMPLING_KEYS, ScoreRequest
from synth.models.local.convert import model_path
from synth.models.local.engine import Engine, GenRequest, shared_engine

log = logging.getLogger(__name__)

_EXTRA_KEYS = (*SAMPLING_KEYS, "assistant_header")


class LocalChatCompletionClient(ChatCompletionClient):
    """An in-process Hugging Face model (default: the embedded ``gemma-3-270m``) behind AutoGen's API.

    ``model`` is a built-in name or a local Hugging Face folder. The model folder is resolved (and the
    built-in model converted, once) at construction; weights load lazily on the first call.
    Implements :class:`synth.models.base.SupportsLogprobs`.
    """

    def __init__(
        self,
        model: str = "gemma-3-270m",
        *,
        dtype: str | None = None,
        max_batch_size: int = 8,
        default_max_tokens: int = 256,
        default_temperature: float = 0.0,
        default_top_p: float = 1.0,
        gather_ms: float = 15.0,
        device: str | None = None,
        section_stop: bool = True,
    ) -> None:
        self.model = model
        self.section_stop = section_stop
        self.path = model_path(model)
        self.default_max_tokens = default_max_tokens
        self.default_temperature = default_temperature
        self.default_top_p = default_top_p
        self._engine: Engine = shared_engine(
            self.path, dtype=dtype, max_batch_size=max_batch_size, gather_ms=gather_ms, device=device
        )
        self._total = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self._model_info = ModelInfo(
            vision=False,
            function_calling=False,
            json_output=True,
            family="unknown",
            structured_output=True,
            multiple_system_messages=True,
        )

    @property
    def engine(self) -> Engine:
        """The shared engine (for benchmarks and tests)."""
        return self._engine

    # -- generation ----------------------------------------------------------------------------------
    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | dict[str, Any] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        """Generate one reply; ``finish_reason`` is ``"length"`` when the token budget cut it."""
        if tools:
            raise ValueError(
                f"{type(self).__name__} ({self.model}) does not support tools/function calling; "
                "pass no tools, or use a backend whose model_info has function_calling=True"
            )
        args = self._sampling_args(extra_create_args)
        await self._ensure_loaded()
        prompt_ids = self._prompt_ids(messages, args.pop("assistant_header"))
        grammar = None
        if json_output is not None and json_output is not False:
            grammar = await asyncio.to_thread(self._engine.grammars.get, json_output)
        limit = self._engine.context_length
        if len(prompt_ids) + args["max_tokens"] > limit:
            raise ValueError(
                f"prompt of {len(prompt_ids)} tokens + max_tokens {args['max_tokens']} exceeds the model's "
                f"context of {limit} tokens; shorten the messages or lower max_tokens"
            )
        section_stop = grammar is None and self.section_stop
        if section_stop:
            args["stop"] = (*args["stop"], SECTION_STOP)
        request = GenRequest(prompt_ids=prompt_ids, grammar=grammar, **args)
        future = asyncio.wrap_future(self._engine.submit(request))
        if cancellation_token is not None:
            cancellation_token.link_future(future)
        result = await future
        text = result.text.rstrip() if section_stop and result.finish_reason == "stop" else result.text
        usage = RequestUsage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens)
        self._total = RequestUsage(
            prompt_tokens=self._total.prompt_tokens + usage.prompt_tokens,
            completion_tokens=self._total.completion_tokens + usage.completion_tokens,
        )
        return CreateResult(content=text, finish_reason=result.finish_reason, usage=usage, cached=False)

    async def create_stream(
        self, messages: Sequence[LLMMessage], **kwargs: Any
    ) -> AsyncGenerator[str | CreateResult, None]:
        """Not incremental (rows of a batch finish together): yields the whole text, then the result."""
        result = await self.create(messages, **kwargs)
        assert isinstance(result.content, str)
        if result.content:
            yield result.content
        yield result

    async def _ensure_loaded(self) -> None:
        if self._engine.model is None:  # first call: ~2-10 s, off the event loop
            await asyncio.to_thread(self._engine.load)

    def _sampling_args(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(extra) - set(_EXTRA_KEYS))
        if unknown:
            warnings.warn(
                f"{type(self).__name__} ignores extra_create_args {unknown}; "
                f"it understands {list(_EXTRA_KEYS)}",
                stacklevel=3,
            )
        max_tokens = int(extra.get("max_tokens") or self.default_max_tokens)
        temperature = extra.get("temperature")
        top_p = extra.get("top_p")
        stop = extra.get("stop") or ()
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        return {
            "max_tokens": max_tokens,
            "temperature": float(self.default_temperature if temperature is None else temperature),
            "top_p": float(self.default_top_p if top_p is None else top_p),
            "seed": None if extra.get("seed") is None else int(extra["seed"]),
            "stop": (stop,) if isinstance(stop, str) else tuple(stop),
            "assistant_header": extra.get("assistant_header"),
        }

    def _prompt_ids(self, messages: Sequence[LLMMessage], assistant_header: str | None = None) -> list[int]:
        text = render_prompt(
            self._engine.tokenizer, messages_to_dicts(messages), assistant_header=assistant_header
        )
        return self._engine.encode(text)

    # -- log-probabilities (SupportsLogprobs) ---------------------------------------------------------
    async def continuation_nll(self, requests: Sequence[ScoreRequest]) -> list[float]:
        """Mean token NLL (nats) of each continuation after the rendered prompt + ``### Assistant\\n``.

        Exact, from a batched forward pass. The continuation is tokenized on its own (no EOS appended).
        """
        await self._ensure_loaded()
        pairs: list[tuple[list[int], list[int]]] = []
        for req in requests:
            cont = self._engine.encode(req.continuation)
            if not cont:
                raise ValueError("cannot score an empty continuation: it has no tokens")
            pairs.append((self._prompt_ids(req.messages), cont))
        if not pairs:
            return []
        return await asyncio.wrap_future(self._engine.submit_scores(pairs))

    # -- bookkeeping ---------------------------------------------------------------------------------
    async def close(self) -> None:
        """No-op: the loaded model is shared by clients in this process (see ``close_shared_engines``)."""

    def actual_usage(self) -> RequestUsage:
        return self._total

    def total_usage(self) -> RequestUsage:
        return self._total

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        """Tokens of the rendered prompt (loads the tokenizer only)."""
        return len(self._prompt_ids(messages))

    def remaining_tokens(
        self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []
    ) -> int:
        return self._engine.context_length - self.count_tokens(messages, tools=tools)

    @property
    def capabilities(self) -> ModelCapabilities:  # type: ignore[override]
        warnings.warn("capabilities is deprecated, use model_info instead", DeprecationWarning, stacklevel=2)
        return ModelCapabilities(vision=False, function_calling=False, json_output=True)  # type: ignore[typeddict-item]

    @property
    def model_info(self) -> ModelInfo:
        return self._model_info
