"""Role agents: instructions + prompt (Jinja2) + a pydantic output schema, run as an AutoGen agent.

A :class:`Role` is an immutable value. ``await role.run(client, **inputs)`` renders its templates, runs a
fresh AutoGen ``AssistantAgent`` (agents keep memory across runs, so one is never shared between rows),
asks the backend for the output schema, validates the reply, sends one repair turn with the validation
error when it does not validate, and returns a :class:`~synth.trajectory.Step` either way: a failed step
keeps the raw text and the reason, so nothing is lost.
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
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from synth.errors import StepError, SynthError
from synth.models.budget import timeout_text
from synth.models.structured import MODE_SINK
from synth.recording import CallRecorder
from synth.trajectory import Step, Usage

_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


@lru_cache(maxsize=1024)
def _compiled(source: str) -> jinja2.Template:
    """Compile each template once: ``from_string`` re-parses on every call (~0.4 ms, per model call)."""
    return _JINJA.from_string(source)


REPAIR_TEMPLATE = (
    "Your reply did not match the required JSON schema.\n"
    "Error: {error}\n"
    "Reply again with only a JSON object that matches this schema:\n{schema}"
)


class TemplateError(SynthError):
    """A role template failed to render (unknown variable, syntax error)."""


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
        step = Step(
            role=self.name,
            node=node or self.name,
            inputs=_json_safe(inputs),
            model=recorder.spec,
            template_hash=self.template_hash,
        )
        started = time.perf_counter()
        error: BaseException | None = None
        sink: dict[str, Any] = {}
        token = MODE_SINK.set(sink)
        try:
            output = await self._ask(agent, user)
        except Exception as exc:
            error = exc
            output = None
            if _is_bad_reply(exc, recorder) and recorder.last_finish_reason != "length" and self.output:
                repair = REPAIR_TEMPLATE.format(error=_short_error(exc), schema=self._schema_text())
                step.repaired = True
                try:
                    output = await self._ask(agent, repair)
                    error = None
                except Exception as exc2:
                    error = exc2
        MODE_SINK.reset(token)
        if "mode" in sink:
            step.meta["structured"] = sink["mode"]
        if "note" in sink:
            step.meta["structured_note"] = sink["note"]
        step.latency_s = time.perf_counter() - started
        step.usage = Usage(
            prompt_tokens=recorder.prompt_tokens,
            completion_tokens=recorder.completion_tokens,
            calls=recorder.calls,
            cached_calls=recorder.cached_calls,
            latency_s=step.latency_s,
        )
        step.cached = recorder.calls > 0 and recorder.cached_calls == recorder.calls
        step.raw = recorder.last_content
        step.finish_reason = recorder.last_finish_reason
        if self.output is None and self.mark_truncated and step.finish_reason == "length":
            step.meta["truncated"] = True
        step.messages = recorder.transcript() or [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]
        if error is None:
            step.output = output
            return step
        step.ok = False
        step.error_reason = _reason(error, recorder)
        # Notes carry the client's retry history ("retries exhausted after 4 attempts: ..."): keep them.
        notes = "".join(f"\n{note}" for note in getattr(error, "__notes__", ()))[:1500]
        cause = f" ({sink['note']})" if "note" in sink else ""
        text = _short_error(error) or (timeout_text(client) if isinstance(error, TimeoutError) else "")
        step.error = f"{type(error).__name__}: {text}{cause}{notes}"
        return step

    async def _ask(self, agent: AssistantAgent, task: str) -> dict[str, Any] | None:
        result = await agent.run(task=task)
        last = result.messages[-1]
        if isinstance(last, StructuredMessage):
            return last.content.model_dump(mode="json")
        if isinstance(last, TextMessage) and self.output is None:
            return None
        raise ValueError(f"unexpected reply message type {type(last).__name__}")

    def _schema_text(self) -> str:
        assert self.output is not None
        return json.dumps(self.output.model_json_schema(), separators=(",", ":"))


def require(step: Step) -> Step:
    """Raise :class:`StepError` for a failed step (graph nodes whose failure fails the row)."""
    if not step.ok:
        raise StepError(
            f"role '{step.role}' failed ({step.error_reason}): {step.error}",
            reason=step.error_reason or "error",
            role=step.role,
            raw=step.raw,
        )
    return step


def _is_bad_reply(error: BaseException, recorder: CallRecorder) -> bool:
    """The model answered but the answer does not validate (as opposed to the backend failing)."""
    return recorder.last_error is None and bool(recorder.calls) and isinstance(error, ValueError)


def _reason(error: BaseException, recorder: CallRecorder) -> str:
    if _is_bad_reply(error, recorder):
        return "length" if recorder.last_finish_reason == "length" else "validation"
    if isinstance(error, TimeoutError) or isinstance(recorder.last_error, TimeoutError):
        return "timeout"
    return "backend"


def _short_error(error: BaseException, limit: int = 600) -> str:
    if isinstance(error, ValidationError):
        text = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in error.errors())
    else:
        text = str(error)
    return text if len(text) <= limit else text[:limit] + "..."


def _identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    return ident if ident[:1].isalpha() else f"r_{ident}"


def _json_safe(inputs: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(inputs, default=str))
