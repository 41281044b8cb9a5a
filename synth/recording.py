"""A per-call view of a model client that records what each role call cost and returned, and repairs it.

AutoGen agents only surface the parsed message; when validation fails the raw text, the finish reason
and the usage of that call would be lost. A :class:`CallRecorder` is made for one role run (or for one
debater of an AutoGen team), sits between the agent and the shared client, merges the role's sampling
parameters into every request, and keeps each call as a :class:`Turn` — so a failed step still carries
its raw text and its token cost.

It is also where the **repair turn** lives: when a reply does not validate against the output schema the
agent asked for, the recorder sends one more request — the conversation, the bad reply, and the
validation error (:data:`REPAIR_TEMPLATE`) — and hands the agent the answer to that. Living at the client
boundary, the repair serves a plain :meth:`~synth.role.Role.run` and every member of an AutoGen team (the
CoEvol debate) alike: a team gives no hook between a member's reply and its parse.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autogen_core.models import (
    AssistantMessage,
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    RequestUsage,
    UserMessage,
)
from pydantic import BaseModel, ValidationError

from synth.models.forwarding import ForwardingClient

#: A dict a call sets before it reaches the client: a client with structured-output modes
#: (:mod:`synth.models.structured`) writes the mode it used, and why it fell back, into it (a mutable
#: holder, so a call run in a child task still reports back).
MODE_SINK: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "synth_mode_sink", default=None
)

#: Key under which the sample index travels to the client (the call cache uses it; it is never sent).
SAMPLE_KEY = "synth_sample"

REPAIR_TEMPLATE = (
    "Your reply did not match the required JSON schema.\n"
    "Error: {error}\n"
    "Reply again with only a JSON object that matches this schema:\n{schema}"
)


def short_error(error: BaseException, limit: int = 600) -> str:
    """A validation error as ``loc: msg; ...`` (what a model can act on), anything else as its text."""
    if isinstance(error, ValidationError):
        text = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in error.errors())
    else:
        text = str(error)
    return text if len(text) <= limit else text[:limit] + "..."


def schema_error(result: CreateResult, json_output: bool | type[BaseModel] | None) -> ValidationError | None:
    """Why ``result`` does not parse as ``json_output`` (the parse an AutoGen agent applies), or None."""
    if not (isinstance(json_output, type) and issubclass(json_output, BaseModel)):
        return None
    if not isinstance(result.content, str):
        return None
    try:
        json_output.model_validate_json(result.content)
    except ValidationError as exc:
        return exc
    return None


@dataclass
class Turn:
    """One ``create`` call of an agent: what it sent, the reply (and the repaired reply, if one was asked
    for), how long it all took, and how it ended."""

    request: list[dict[str, Any]]
    started: float
    results: list[CreateResult] = field(default_factory=list)
    #: Messages of the last request sent: ``request``, or the repair conversation.
    sent: list[dict[str, Any]] = field(default_factory=list)
    latency_s: float = 0.0
    repaired: bool = False
    #: The backend failed (after its retries): the call raised this.
    error: BaseException | None = None
    #: The final reply still does not validate against the requested schema.
    invalid: ValidationError | None = None
    #: The structured-output mode the client used (json_schema / json_object / prompt), and why it fell
    #: back (:mod:`synth.models.structured`); None for free text or clients without modes.
    structured: str | None = None
    structured_note: str | None = None

    @property
    def raw(self) -> str:
        if not self.results:
            return ""
        content = self.results[-1].content
        return content if isinstance(content, str) else str(content)

    @property
    def finish_reason(self) -> str | None:
        return self.results[-1].finish_reason if self.results else None

    @property
    def ok(self) -> bool:
        return self.error is None and self.invalid is None and bool(self.results)

    def transcript(self) -> list[dict[str, Any]]:
        """The last request's messages followed by the last reply: what the model saw and said."""
        reply = [{"role": "assistant", "content": self.raw}] if self.results else []
        return [*(self.sent or self.request), *reply]


def message_dict(message: LLMMessage) -> dict[str, Any]:
    """An AutoGen message as a JSON-native chat message (``role``, ``content``, optional ``name``)."""
    role = {"SystemMessage": "system", "UserMessage": "user", "AssistantMessage": "assistant"}.get(
        type(message).__name__, "tool"
    )
    content = getattr(message, "content", "")
    out: dict[str, Any] = {"role": role, "content": content if isinstance(content, str) else str(content)}
    source = getattr(message, "source", None)
    if source and role != "system" and source != "user":
        out["name"] = source
    return out


class CallRecorder(ForwardingClient):
    """Delegates to ``inner``; records each call as a :class:`Turn`; injects sampling parameters; sends
    one repair turn for a reply that fails its schema (``repair=False`` turns that off). Its usage is its
    own calls'; token counting and model info are the wrapped client's."""

    def __init__(
        self,
        inner: ChatCompletionClient,
        *,
        sampling: Mapping[str, Any] | None = None,
        sample: int = 0,
        repair: bool = True,
    ) -> None:
        super().__init__(inner)
        self._sampling = dict(sampling or {})
        self._sample = sample
        self._repair = repair
        self.turns: list[Turn] = []
        #: Every result, repairs included, in order (usage accounting).
        self.results: list[CreateResult] = []
        self.last_error: BaseException | None = None

    @property
    def spec(self) -> str:
        return str(getattr(self.inner, "spec", type(self.inner).__name__))

    def _args(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        args = {**self._sampling, **extra}
        if self._sample:
            args[SAMPLE_KEY] = self._sample
        return args

    async def create(self, messages: Sequence[LLMMessage], **kwargs: Any) -> CreateResult:
        self.last_error = None
        turn = Turn(request=[message_dict(m) for m in messages], started=time.perf_counter())
        self.turns.append(turn)
        json_output = kwargs.get("json_output")
        sent_args = {**kwargs, "extra_create_args": self._args(kwargs.get("extra_create_args", {}))}

        async def ask(sent: Sequence[LLMMessage]) -> CreateResult:
            sink: dict[str, Any] = {}  # the client below writes the structured mode it used into it
            token = MODE_SINK.set(sink)
            try:
                result = await self.inner.create(sent, **sent_args)
            finally:
                MODE_SINK.reset(token)
            turn.structured = sink.get("mode", turn.structured)
            turn.structured_note = sink.get("note", turn.structured_note)
            turn.results.append(result)
            self.results.append(result)
            return result

        try:
            result = await ask(messages)
            turn.invalid = schema_error(result, json_output)
            # A reply cut by max_tokens would be cut again: only a complete but wrong reply is repaired.
            if turn.invalid is not None and self._repair and result.finish_reason != "length":
                assert isinstance(json_output, type)
                repair = self._repair_messages(messages, result, turn.invalid, json_output)
                turn.repaired, turn.sent = True, [message_dict(m) for m in repair]
                result = await ask(repair)
                turn.invalid = schema_error(result, json_output)
        except BaseException as exc:
            self.last_error = turn.error = exc
            raise
        finally:
            turn.latency_s = time.perf_counter() - turn.started
        return result

    @staticmethod
    def _repair_messages(
        messages: Sequence[LLMMessage], bad: CreateResult, error: ValidationError, schema: type[BaseModel]
    ) -> list[LLMMessage]:
        """The conversation, the bad reply, and the error with the schema: what the model gets to fix it."""
        text = REPAIR_TEMPLATE.format(
            error=short_error(error), schema=json.dumps(schema.model_json_schema(), separators=(",", ":"))
        )
        return [
            *messages,
            AssistantMessage(content=str(bad.content), source="assistant"),
            UserMessage(content=text, source="user"),
        ]

    async def create_stream(
        self, messages: Sequence[LLMMessage], **kwargs: Any
    ) -> AsyncGenerator[str | CreateResult, None]:
        # Roles never stream; a single final chunk keeps the contract for callers that do.
        yield await self.create(messages, **kwargs)

    async def close(self) -> None:
        """The shared client outlives this per-call view: closing it is the owner's job."""

    def actual_usage(self) -> RequestUsage:
        return RequestUsage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens)

    def total_usage(self) -> RequestUsage:
        return self.actual_usage()

    # --- what the role reads back -------------------------------------------------------------
    @property
    def calls(self) -> int:
        return len(self.results)

    @property
    def cached_calls(self) -> int:
        return sum(1 for r in self.results if r.cached)

    @property
    def prompt_tokens(self) -> int:
        return sum(r.usage.prompt_tokens for r in self.results)

    @property
    def completion_tokens(self) -> int:
        return sum(r.usage.completion_tokens for r in self.results)

    @property
    def repaired(self) -> bool:
        return any(turn.repaired for turn in self.turns)

    @property
    def last_content(self) -> str:
        return self.turns[-1].raw if self.turns else ""

    def transcript(self) -> list[dict[str, Any]]:
        """The last turn's last request and reply (see :meth:`Turn.transcript`)."""
        return self.turns[-1].transcript() if self.turns else []

    @property
    def last_finish_reason(self) -> str | None:
        return self.turns[-1].finish_reason if self.turns else None
