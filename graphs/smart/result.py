"""SMART's trajectory ``result``, typed: what the exports, the report and ``train/`` read.

``graph.to_trajectory`` writes it as JSON-native dicts; ``trajectory.result_as(SmartResult)`` reads it
back typed (unknown keys are refused, so the model and the graph cannot drift apart unnoticed).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from synth.qa import Document
from synth.retrieval import QueryHits


class Fact(BaseModel):
    """One retrieved passage and the Fact Locator's verdict on it, after the span check."""

    model_config = ConfigDict(extra="forbid")
    passage: Document
    queries: list[int]
    relevant: bool
    spans: list[str]
    claimed_relevant: bool
    rejected_spans: list[str]
    reason: str
    ok: bool


class SmartResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instruction: str
    queries: list[str]
    retrieval: list[QueryHits]
    facts: list[Fact]
    branch: str
    #: The gold answer when the seed has some (the model's matching one first), else the model's.
    answer: str
    model_answer: str
    answers: list[str]
    exact_match: bool | None
    citations: list[str]
    dropped_citations: list[str]
