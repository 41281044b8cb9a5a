"""CoEvol's trajectory ``result``, typed: what the exports, the report and ``train/`` read.

``graph.to_trajectory`` writes it as JSON-native dicts; ``trajectory.result_as(CoEvolResult)`` reads it
back typed (unknown keys are refused, so the model and the graph cannot drift apart unnoticed).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class JudgeScores(BaseModel):
    """Both judge runs merged (``graph.merge_judge_scores``): scores by position, averaged."""

    model_config = ConfigDict(extra="forbid")
    previous: float
    new: float
    runs: list[tuple[float, float] | None]
    verdicts: list[str | None]
    judge_error: bool


class Round(BaseModel):
    model_config = ConfigDict(extra="forbid")
    round: int
    suggestions: list[str]
    candidate: str
    previous: str
    scores: JudgeScores
    accepted: bool


class CoEvolResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instruction: str
    input: str
    original: str | None
    evolved: str | None
    accepted_rounds: int
    rounds: list[Round]
    stop_reason: str
