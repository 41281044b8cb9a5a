"""The records every graph run yields: one ``Step`` per role call, one ``Trajectory`` per seed row.

Both are plain pydantic models whose ``model_dump(mode="json")`` is JSON-native, so they travel through
LangGraph state (and its checkpointer) as dicts and land in SQLite / parquet unchanged.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["ok", "failed", "filtered"]
M = TypeVar("M", bound=BaseModel)


class Usage(BaseModel):
    """Token and call accounting; adds up across steps and rows."""

    model_config = ConfigDict(extra="forbid")

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    cached_calls: int = 0
    latency_s: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            calls=self.calls + other.calls,
            cached_calls=self.cached_calls + other.cached_calls,
            latency_s=self.latency_s + other.latency_s,
        )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Step(BaseModel):
    """One role call: what went in, what came out, and what it cost.

    ``output`` is the validated structured output as a dict (``None`` for free-text roles and for failed
    steps); ``raw`` is the model's last raw text, kept even when validation failed.
    ``messages`` is the exact conversation the model saw (system, user, and the assistant reply), so
    exports can rebuild training records without re-rendering templates.
    """

    model_config = ConfigDict(extra="forbid")

    role: str
    node: str = ""
    inputs: dict[str, Any] = Field(default_factory=dict)
    messages: list[dict[str, Any]] = Field(default_factory=list)
    output: dict[str, Any] | None = None
    raw: str = ""
    ok: bool = True
    error: str | None = None
    error_reason: str | None = None
    model: str = ""
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    cached: bool = False
    repaired: bool = False
    #: The last call's finish reason ("stop", "length": cut by max_tokens, ...); None before any reply.
    finish_reason: str | None = None
    template_hash: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)

    def as_state(self) -> dict[str, Any]:
        """The JSON-native form stored in graph state."""
        return self.model_dump(mode="json")

    def output_as(self, model: type[M]) -> M:
        """The structured output as the role's pydantic ``model`` (typed access, no ``# type: ignore``).

        Only for a step that succeeded: a failed step has no output, which is a :class:`ValueError` here."""
        if self.output is None:
            raise ValueError(f"step of role '{self.role}' (node '{self.node}') has no output: {self.error}")
        return model.model_validate(self.output)


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    graph: str
    graph_version: str
    fingerprint: str
    role_templates: dict[str, str] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict)
    sampling: dict[str, Any] = Field(default_factory=dict)
    synth_version: str = ""
    started_at: str = ""
    finished_at: str = ""


class Trajectory(BaseModel):
    """One record per seed row: its seed, every step that ran, its result or failure (README.md)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    graph: str
    seed: dict[str, Any]
    source: str = ""
    steps: list[Step] = Field(default_factory=list)
    result: dict[str, Any] = Field(default_factory=dict)
    scores: dict[str, Any] = Field(default_factory=dict)
    status: Status = "ok"
    error: str | None = None
    filter_reason: str | None = None
    provenance: Provenance | None = None
    usage: Usage = Field(default_factory=Usage)

    def result_as(self, model: type[M]) -> M:
        """The graph's ``result`` as its result model (``SynthGraph.result_model``), validated."""
        return model.model_validate(self.result)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def content_hash(value: Any) -> str:
    """A stable short hash of a JSON-able value (key order does not matter)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def row_key(row: dict[str, Any]) -> str:
    """What identifies a seed row: its own ``id`` field if it has one, else a hash of its content."""
    own = row.get("id")
    return f"id:{own}" if own not in (None, "") else f"row:{content_hash(row)}"


def trajectory_id(key: str, occurrence: int, fingerprint: str) -> str:
    """Stable id of a seed row within a run, from :func:`row_key` and how often that key came before.

    Two identical rows get two ids (dropping duplicates is a filter's job, with a reason, never silent).
    The graph fingerprint is part of the id, so a changed graph never reuses old records.
    """
    return content_hash([key, occurrence, fingerprint])
