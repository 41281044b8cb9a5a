"""Role agents: instructions + prompt (Jinja2) + a pydantic output schema, run as an AutoGen agent.

A :class:`Role` is an immutable value. ``await role.run(client, **inputs)`` renders its templates, runs a
fresh AutoGen ``AssistantAgent`` (agents keep memory across runs, so one is never shared between rows),
asks the backend for the output schema, validates the reply — the :class:`~synth.recording.CallRecorder`
under the agent sends one repair turn with the validation error when it does not validate — and returns
a :class:`~synth.trajectory.Step` either way: a failed step keeps the raw text and the reason, so nothing
is lost. :meth:`Role.step` builds that Step from recorded turns, for a plain run and for a member of an
AutoGen team (the CoEvol debate) alike.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from functools import cached_property, lru_cache
from typing import Any

import jinja2
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.messages import StructuredMessage, TextMessage
from jinja2 import meta
from pydantic import BaseModel, ConfigDict, create_model, field_validator

from synth.errors import SynthError
from synth.models.budget import timeout_text
from synth.recording import CallRecorder, Turn, short_error
from synth.trajectory import Step, Usage

_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


@lru_cache(maxsize=1024)
def _compiled(source: str) -> jinja2.Template:
    """Compile each template once: ``from_string`` re-parses on every call (~0.4 ms, per model call)."""
    return _JINJA.from_string(source)


class TemplateError(SynthError):
    """A role template failed to render (unknown variable, syntax error)."""


class Output(BaseModel):
    """Base of a role's structured output: unknown fields are refused, so the JSON schema the backend
    gets is strict (``additionalProperties: false``) and a reply with extra keys gets a repair turn."""

    model_config = ConfigDict(extra="forbid")


def output_model(name: str, **fields: Any) -> type[Output]:
    """An :class:`Output` model named ``name`` with these required fields (``answer=str``): the same model
    and JSON schema as the class written out, in one line."""
    declared: dict[str, Any] = {field: (kind, ...) for field, kind in fields.items()}
    return create_model(name, __base__=Output, **declared)


class Role(BaseModel):
    """One LLM role. ``output=None`` means free text (e.g. a debate turn)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    name: str
    instructions: str
    prompt: str
    output: type[BaseModel] | None = None
    sampling: dict[str, Any] = {}
    description: str = ""
    #: A free-text reply cut by max_tokens is marked truncated (``meta.truncated``; exports leave its
    #: trajectory out). False for a role whose graph expects and handles the cut (keeps a first line).
    mark_truncated: bool = True

    @field_validator("name")
    @classmethod
    def _name_is_identifier_like(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]*", value):
            raise ValueError(f"role name {value!r} must start with a letter and use letters, digits, _ or -")
        return value

    def with_(self, **changes: Any) -> Role:
        """A modified copy (validated like a new Role)."""
        return Role.model_validate({**self.__dict__, **changes})

    @cached_property
    def variables(self) -> tuple[str, ...]:
        """The names the templates read (sorted): what :func:`synth.graph.role_node` takes from state."""
        names: set[str] = set()
        for source in (self.instructions, self.prompt):
            names |= meta.find_undeclared_variables(_JINJA.parse(source))
        return tuple(sorted(names))

    @cached_property
    def template_hash(self) -> str:
        schema = self.output.model_json_schema() if self.output else None
        text = json.dumps([self.instructions, self.prompt, schema], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def render(self, **inputs: Any) -> tuple[str, str]:
        """(system message, user message) for these inputs; a missing variable names the role."""
        return self._render("instructions", self.instructions, inputs), self._render(
            "prompt", self.prompt, inputs
        )

    def _render(self, which: str, template: str, inputs: dict[str, Any]) -> str:
        try:
            return _compiled(template).render(**inputs).strip()
        except jinja2.UndefinedError as exc:
            raise TemplateError(
                f"role '{self.name}' {which} template: {exc.message}; inputs given: {sorted(inputs)}. "
                "Pass the missing input or fix the template."
            ) from exc
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"role '{self.name}' {which} template line {exc.lineno}: {exc.message}"
            ) from exc

    def agent(self, client: Any, system_message: str, *, agent_name: str | None = None) -> AssistantAgent:
        """A fresh AutoGen agent for this role (one per row; never reuse across rows)."""
        return AssistantAgent(
            name=_identifier(agent_name or self.name),
            model_client=client,
            system_message=system_message,
            output_content_type=self.output,
            reflect_on_tool_use=False,
        )

    async def run(self, client: Any, *, node: str = "", sample: int = 0, **inputs: Any) -> Step:
        """Run the role once and return its Step (``step.ok`` is False when it failed).

        ``sample`` distinguishes repeated samples of the same call (it goes into the call-cache key).
        """
        system, user = self.render(**inputs)
        recorder = CallRecorder(client, sampling=self.sampling, sample=sample)
        agent = self.agent(recorder, system)
        started = time.perf_counter()
        output: dict[str, Any] | None = None
        error: BaseException | None = None
        try:
            output = await self._ask(agent, user)
        except Exception as exc:
            error = exc
        fallback = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        step = self.step(
            recorder.turns,
            node=node,
            inputs=inputs,
            model=recorder.spec,
            output=output,
            error=error,
            timeout_hint=timeout_text(client) if error is not None else "",
        )
        step.messages = step.messages or fallback
        step.latency_s = step.usage.latency_s = time.perf_counter() - started
        return step

    def step(
        self,
        turns: list[Turn],
        *,
        node: str = "",
        inputs: dict[str, Any],
        model: str,
        output: dict[str, Any] | None = None,
        error: BaseException | None = None,
        timeout_hint: str = "",
    ) -> Step:
        """The Step of this role's model calls ``turns`` (one, or none if it failed before calling), with
        ``output`` on success or ``error`` on failure: reason, message with the retry history, raw text.

        Each turn's structured-output mode goes to ``meta.structured`` (and why it fell back, e.g. the server
        ignored ``response_format``, to ``meta.structured_note`` and the error); ``timeout_hint`` replaces the
        empty message of a timeout (after how long, what to change)."""
        results = [r for turn in turns for r in turn.results]
        latency = sum(turn.latency_s for turn in turns)
        last = turns[-1] if turns else None
        step = Step(
            role=self.name,
            node=node or self.name,
            inputs=_json_safe(inputs),
            model=model,
            template_hash=self.template_hash,
            raw=last.raw if last else "",
            messages=last.transcript() if last else [],
            repaired=any(turn.repaired for turn in turns),
            cached=bool(results) and all(r.cached for r in results),
            latency_s=latency,
            usage=Usage(
                prompt_tokens=sum(r.usage.prompt_tokens for r in results),
                completion_tokens=sum(r.usage.completion_tokens for r in results),
                calls=len(results),
                cached_calls=sum(1 for r in results if r.cached),
                latency_s=latency,
            ),
            finish_reason=last.finish_reason if last else None,
        )
        if last is not None and last.structured:
            step.meta["structured"] = last.structured
        cause = next((turn.structured_note for turn in reversed(turns) if turn.structured_note), "")
        if cause:
            step.meta["structured_note"] = cause
        if self.output is None and self.mark_truncated and step.finish_reason == "length":
            step.meta["truncated"] = True  # a free-text reply cut by max_tokens: exports leave it out
        if error is None:
            step.output = output
            return step
        step.ok = False
        step.error_reason = _reason(error, last)
        # Notes carry the client's retry history ("retries exhausted after 4 attempts: ..."): keep them.
        notes = "".join(f"\n{note}" for note in getattr(error, "__notes__", ()))[:1500]
        text = short_error(error) or (timeout_hint if isinstance(error, TimeoutError) else "")
        step.error = f"{type(error).__name__}: {text}{f' ({cause})' if cause else ''}{notes}"
        return step

    async def _ask(self, agent: AssistantAgent, task: str) -> dict[str, Any] | None:
        result = await agent.run(task=task)
        last = result.messages[-1]
        if isinstance(last, StructuredMessage):
            return last.content.model_dump(mode="json")
        if isinstance(last, TextMessage) and self.output is None:
            return None
        raise ValueError(f"unexpected reply message type {type(last).__name__}")


def _reason(error: BaseException, turn: Turn | None) -> str:
    """``validation``/``length`` (the model answered, the answer does not parse), ``timeout``, ``backend``."""
    if turn is not None and turn.error is None and turn.results and isinstance(error, ValueError):
        return "length" if turn.finish_reason == "length" else "validation"
    if isinstance(error, TimeoutError) or isinstance(turn and turn.error, TimeoutError):
        return "timeout"
    return "backend"


def _identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    return ident if ident[:1].isalpha() else f"r_{ident}"


def _json_safe(inputs: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(inputs, default=str))
