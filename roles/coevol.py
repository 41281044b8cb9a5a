"""CoEvol's roles (Li et al., EMNLP 2024): two debaters, advisor, editor, judge, and a responder.

One backbone plays every persona; the personas differ only in their instructions. Outputs are small
pydantic models so every backend (including the embedded one, through constrained decoding) returns
parseable replies.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from roles.common import template
from synth.role import Role

#: The three verdicts of the judge, as the paper names them.
VERDICTS = ("assistant 1", "assistant 2", "equal")


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    response: str = Field(description="The complete response to the instruction.")


class DebateTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    argument: str = Field(description="Your argument in this round of the debate.")


class Advice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    suggestions: list[str] = Field(
        max_length=3, description="At most 3 concrete, actionable suggestions, one per item."
    )


class Revision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    response: str = Field(description="The revised response.")


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["assistant 1", "assistant 2", "equal"]
    explanation: str = Field(description="Why, in one or two sentences.")


def _role(name: str, output: type[BaseModel], description: str, prompt: str = "") -> Role:
    return Role(
        name=name,
        instructions=template(f"coevol/{name}.system.j2"),
        prompt=template(f"coevol/{prompt or name}.user.j2"),
        output=output,
        sampling={"temperature": 0.0},
        description=description,
    )


RESPONDER = _role("responder", Answer, "Writes the first response when a seed row has none.")
POSITIVE_DEBATER = _role(
    "positive_debater", DebateTurn, "Defends the response (round 1), then weighs the critic.", "debate"
)
CRITICAL_DEBATER = _role(
    "critical_debater", DebateTurn, "Attacks the response and proposes improvements.", "debate"
)
ADVISOR = _role("advisor", Advice, "Turns the debate into at most 3 concrete suggestions.")
EDITOR = _role("editor", Revision, "Revises the response following the suggestions it can follow.")
JUDGE = _role("judge", Verdict, "Compares two responses: assistant 1, assistant 2 or equal.")

ROLES = (RESPONDER, POSITIVE_DEBATER, CRITICAL_DEBATER, ADVISOR, EDITOR, JUDGE)
