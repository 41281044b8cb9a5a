"""The reward judge: a role that scores one response 0-10, used as a GRPO reward (``train.reward_sources``).

The score is a bounded integer field of a pydantic output, so every backend (the embedded model through
constrained decoding included) returns a parseable score; the reward is ``score / 10``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from roles.common import template
from synth.role import Role

MAX_SCORE = 10


class Score(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(description="Why, in one sentence.")
    score: int = Field(ge=0, le=MAX_SCORE, description="0 = wrong or useless, 10 = fully correct.")


REWARD_JUDGE = Role(
    name="reward_judge",
    instructions=template("reward/judge.system.j2"),
    prompt=template("reward/judge.user.j2"),
    output=Score,
    sampling={"temperature": 0.0},
    description="Scores one response to a task 0-10 (GRPO judge reward).",
)
