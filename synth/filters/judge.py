"""The model-based filter: an LLM judge (a :class:`~synth.role.Role`) scores a field with a rubric.

The judge is a Role like any other: its prompt is the rubric (a Jinja template that sees ``text``,
``prompt``, ``seed``, ``result``, ``scores``, ``id``, ``low`` and ``high``), its output a pydantic model
``{reason, score}`` whose score is bounded by the scale (so constrained decoding keeps it in range), and
its calls go through the same managed clients as a run's: bounded calls in flight, timeouts, retries, and
the run's call cache keyed per row, so re-applying the filter never pays for a call twice. Rows are judged
concurrently, at most ``concurrency`` at a time. A row whose judge gives no valid score (after the repair
turn and the client's retries) is filtered with that reason. A backend error is never cached, so
re-applying retries it; a reply that did not validate was a paid answer and is replayed from the cache.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, create_model

from synth.engine.cache import CALL_SCOPE
from synth.filters.config import JudgeSpec
from synth.filters.rules import lookup, text_at
from synth.role import Role
from synth.trajectory import Trajectory, Usage


def judge_role(spec: JudgeSpec) -> Role:
    """The judge Role of ``spec``: the rubric as its prompt, ``{reason, score}`` as its output."""
    low, high = spec.scale
    output: type[BaseModel] = create_model(
        "JudgeScore",
        reason=(str, Field(description="one or two sentences")),
        score=(float, Field(ge=low, le=high)),
    )
    return Role(
        name="filter-judge",
        instructions=spec.instructions,
        prompt=spec.rubric,
        output=output,
        sampling={"temperature": 0.0},
        description="scores a trajectory field with a rubric for `synth filter`",
    )


@dataclass
class JudgeFilter:
    """Scores a batch of trajectories concurrently; see the module doc."""

    spec: JudgeSpec
    client: Any
    concurrency: int
    role: Role = field(init=False)
    usage: Usage = field(default_factory=Usage)

    def __post_init__(self) -> None:
        self.role = judge_role(self.spec)

    async def reasons(self, trajectories: list[Trajectory]) -> list[str | None]:
        slots = asyncio.Semaphore(self.concurrency)

        async def judged(trajectory: Trajectory) -> str | None:
            async with slots:
                return await self.judge(trajectory)

        return list(await asyncio.gather(*(judged(t) for t in trajectories)))

    async def judge(self, trajectory: Trajectory) -> str | None:
        """The reason ``trajectory`` fails (None: it passes); records the score in ``scores.filters``."""
        text = text_at(trajectory, self.spec.field)
        if not text.strip():
            return f"judge: {self.spec.field} is empty"
        # This task's context only: the call cache keys the call by the row, as a run's calls are.
        CALL_SCOPE.set(f"filter:{trajectory.id}")
        low, high = self.spec.scale
        prompt = lookup(trajectory, self.spec.prompt_field) if self.spec.prompt_field else ""
        step = await self.role.run(
            self.client,
            node="filter",
            text=text,
            prompt=prompt or "",
            seed=trajectory.seed,
            result=trajectory.result,
            scores=trajectory.scores,
            id=trajectory.id,
            low=low,
            high=high,
        )
        self.usage = self.usage + step.usage
        if not step.ok or step.output is None:
            return f"judge: no valid score ({step.error_reason}): {(step.error or '')[:200]}"
        score = float(step.output["score"])
        trajectory.scores.setdefault("filters", {})[self.spec.name] = score
        if score < self.spec.threshold:
            return f"judge: score {score:g} < {self.spec.threshold:g} ({str(step.output['reason'])[:200]})"
        return None
