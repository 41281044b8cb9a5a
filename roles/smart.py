"""SMART's LLM roles (Yue et al. 2024): Intent Reconstructor, Fact Locator, Response Generator.

The fourth SMART agent, the Knowledge Retriever, is not an LLM: it is :mod:`synth.retrieval`. Every role
runs at temperature 0 (the paper's Intent Reconstructor is greedy; the others are too, so a re-run is
reproducible). The Response Generator is one role with two prompt variants, chosen by whether any
located fact is passed in: the graph branches, the role's name and per-role model stay the same.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from roles.common import template
from synth.role import Role

#: Upper bounds in the schemas: constrained decoders (the embedded model, vLLM) stop there instead of
#: repeating items until max_tokens. The graph's ``max_queries`` option may only lower MAX_QUERIES.
MAX_QUERIES = 5
MAX_SPANS = 5


class SearchQueries(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[str] = Field(
        min_length=1,
        max_length=MAX_QUERIES,
        description="Search queries; for a multi-hop question one sub-question per hop, in order.",
    )


class LocatedFacts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    relevant: bool = Field(description="Whether the passage helps to answer the instruction.")
    spans: list[str] = Field(
        max_length=MAX_SPANS,
        description="When relevant: complete sentences copied word for word from the passage; else empty.",
    )


class Response(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer: str = Field(description="The answer to the instruction, short and direct.")
    citations: list[str] = Field(description="Ids of the passages the answer uses; empty without facts.")


def _role(name: str, output: type[BaseModel], description: str) -> Role:
    return Role(
        name=name,
        instructions=template(f"smart/{name}.system.j2"),
        prompt=template(f"smart/{name}.user.j2"),
        output=output,
        sampling={"temperature": 0.0},
        description=description,
    )


INTENT_RECONSTRUCTOR = _role(
    "intent_reconstructor", SearchQueries, "Instruction -> search queries (multi-hop: sub-questions)."
)
FACT_LOCATOR = _role(
    "fact_locator",
    LocatedFacts,
    "One passage -> relevant + verbatim spans, or irrelevant (sees gold answers).",
)
RESPONSE_GENERATOR = _role(
    "response_generator", Response, "Instruction + located facts (or none) -> answer + cited passage ids."
)

ROLES = (INTENT_RECONSTRUCTOR, FACT_LOCATOR, RESPONSE_GENERATOR)
