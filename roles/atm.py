"""ATM's roles (Zhu et al., EMNLP 2024): the Attacker and the Generator.

* Attacker: question + gold answers + an example passage -> one fabricated passage (title + text) that
  is on topic but misleading. It is sampled (paper: temperature 0.8, top_p 0.95) several times per
  question; the graph passes a sample index so the N samples stay distinct under the call cache.
* Generator: documents (or none: closed-book) + question -> a very short answer, as plain text. Plain
  text on purpose: the generator's answer is what ATM scores (the NLL of the gold answer as the reply)
  and what its SFT / MITO targets are, so generation, scoring and training all use one format.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from roles.common import template
from synth.role import Role

#: Defaults from the paper for the attacker's sampling.
ATTACKER_TEMPERATURE = 0.8
ATTACKER_TOP_P = 0.95
#: A very short answer: a few words. A longer reply is cut; the graph keeps its first line.
GENERATOR_MAX_TOKENS = 24


class Fabrication(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(description="Title of the fabricated passage, like an encyclopedia article title.")
    text: str = Field(description="The fabricated passage: on topic, misleading, never the correct answer.")


ATTACKER = Role(
    name="attacker",
    instructions=template("atm/attacker.system.j2"),
    prompt=template("atm/attacker.user.j2"),
    output=Fabrication,
    sampling={"temperature": ATTACKER_TEMPERATURE, "top_p": ATTACKER_TOP_P},
    description="Question + gold answers + example passage -> a misleading fabricated passage (N samples).",
)

GENERATOR = Role(
    name="generator",
    instructions=template("atm/generator.system.j2"),
    prompt=template("atm/generator.user.j2"),
    output=None,
    sampling={"temperature": 0.0, "max_tokens": GENERATOR_MAX_TOKENS},
    mark_truncated=False,  # the graph keeps the first line of a cut answer
    description="Documents (or none) + question -> a very short plain-text answer; also the NLL scorer.",
)

ROLES = (ATTACKER, GENERATOR)


def attacker_with(temperature: float, top_p: float) -> Role:
    """The attacker with the run's sampling options (the template hash does not change)."""
    if (temperature, top_p) == (ATTACKER_TEMPERATURE, ATTACKER_TOP_P):
        return ATTACKER
    return ATTACKER.with_(sampling={"temperature": temperature, "top_p": top_p})


def generator_inputs(question: str, passages: list[dict[str, Any]]) -> dict[str, Any]:
    """The generator's template inputs: only title and text of each passage reach the prompt."""
    return {"question": question, "passages": [{"title": p["title"], "text": p["text"]} for p in passages]}


def short_answer(text: str) -> str:
    """The generator's answer: the first non-empty line of its reply, stripped."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
