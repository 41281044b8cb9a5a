"""Tiny graphs for engine tests and benchmarks: ``ECHO`` (one role) and ``CHAIN`` (three roles, two nodes).

They measure and test the engine, not a method. ``ECHO`` is one node with one structured role call, so a
benchmark's rows/s is calls/s. ``CHAIN`` is ``draft`` (drafter) then ``review`` (critic, then reviser:
two calls in one node, like a debate), so a test can kill a row between nodes (resume from the
checkpoint) or inside a node (the node re-runs; its finished call comes from the call cache).

Run them by reference::

    synth run synth.testing.graphs:ECHO -i seeds.jsonl -o runs/x -m openai:m@http://127.0.0.1:PORT/v1

with the loopback server answering through :func:`echo_responder` (``--responder
synth.testing.graphs:echo_responder`` in process mode; the default responder works too, with constant
answers). Seed rows are ``{"text": "..."}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from synth.graph import BaseState, ModelSet, SynthGraph, chain, failed
from synth.role import Output, Role
from synth.testing.replies import last_user_text, system_text


class TextSeed(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str = Field(min_length=1)


class Answer(Output):
    answer: str


def _role(name: str, task: str) -> Role:
    return Role(
        name=name,
        instructions=f"You are the {name}. {task} Reply with JSON only.",
        prompt="Text: {{ text }}",
        output=Answer,
    )


ECHO_ROLE = _role("echo", "Repeat the text.")
CHAIN_ROLES = (
    _role("drafter", "Write a first answer to the text."),
    _role("critic", "Criticise the answer."),
    _role("reviser", "Revise the answer."),
)


class TextState(BaseState, total=False):
    text: str


def _node(roles: tuple[Role, ...], models: ModelSet) -> Any:
    """One node running ``roles`` in turn, each on the previous one's answer."""

    async def node(state: TextState) -> dict[str, Any]:
        text: str = state.get("text") or state["seed"]["text"]
        steps: list[dict[str, Any]] = []
        for role in roles:
            step = await role.run(models.for_role(role.name), text=text)
            if not step.ok:
                return {**failed(step), "steps": [*steps, step.as_state()]}
            steps.append(step.as_state())
            text = step.output_as(Answer).answer
        return {"steps": steps, "text": text}

    return node


def _to_trajectory(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"result": {"answer": state.get("text", "")}}


ECHO = SynthGraph(
    name="echo",
    description="One role that echoes the seed text (engine tests and benchmarks).",
    version="1",
    seed_model=TextSeed,
    roles=(ECHO_ROLE,),
    build=lambda models: chain(TextState, {"echo": _node((ECHO_ROLE,), models)}),
    to_trajectory=_to_trajectory,
    exports={},
)

CHAIN = SynthGraph(
    name="chain",
    description="draft (drafter) -> review (critic, reviser): resume tests kill between and inside nodes.",
    version="1",
    seed_model=TextSeed,
    roles=CHAIN_ROLES,
    build=lambda models: chain(
        TextState, {"draft": _node(CHAIN_ROLES[:1], models), "review": _node(CHAIN_ROLES[1:], models)}
    ),
    to_trajectory=_to_trajectory,
    exports={},
)


def echo_responder(request: dict[str, Any]) -> str:
    """Deterministic: ``{"answer": "<role>(<text>)"}`` for a JSON-schema request, else the user text.

    The role is the word after "You are the" in the system message; the text is the row's prompt (the
    first user message: a repair turn answers the original question), cut to 200 characters so chains
    of calls stay small.
    """
    users = [m.get("content") for m in request.get("messages") or [] if m.get("role") == "user"]
    prompt = users[0] if users and isinstance(users[0], str) else last_user_text(request)
    text = prompt.removeprefix("Text: ")[:200]
    system = system_text(request)
    role = system.split("You are the ", 1)[1].split(".", 1)[0] if "You are the " in system else "model"
    if (request.get("response_format") or {}).get("type") == "json_schema":
        return json.dumps({"answer": f"{role}({text})"})
    return text
