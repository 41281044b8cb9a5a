"""Reuse of failures: the generic export formats every graph gets from scored candidate answers.

The survey's three ways to reuse what a graph produced — a better answer directly, a better/worse pair
as preference data, a wrong answer plus its correction — all need one thing from a graph: for each
trajectory, the prompt and the candidate answers it produced, each with a score on one scale (higher is
better) and, when an environment judged it, whether it is correct. A graph declares them in one of two ways:

* its ``to_trajectory`` writes ``result["candidates"]`` as a :class:`Candidates` dict (nothing else to do:
  :func:`synth.dataset.export.formats_for` adds the standard formats to every graph), or
* its exports module passes an adapter from its own ``result`` to :func:`standard_exports` (CoEvol, SMART:
  their stored runs predate this, and an adapter keeps them exportable).

From the candidates, :func:`standard_exports` derives:

* ``sft`` — the prompt and the best answer (never one known to be wrong);
* ``dpo`` — best (chosen) over worst (rejected), when their scores differ and their texts do: CoEvol's
  accepted edit over the original, a revision the judge scored lower, EM-correct over EM-wrong, the most
  over the least misleading fabrication...;
* ``corrections`` — the worse answer, a request to correct it, and the best answer as the completion
  (prompt/completion rows, so TRL trains on the correction only);
* ``rl`` — the prompt plus reward fields: gold ``answers`` (exact-match rewards) and the best answer as a
  ``reference`` (similarity or judge rewards).

One row per trajectory per format, so no seed row weighs more than another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from synth.dataset.formats import (
    assistant_turn,
    dpo_features,
    prompt_completion_features,
    rl_features,
    sft_features,
)
from synth.errors import ExportError
from synth.graph import ExportFormat
from synth.trajectory import Trajectory

#: The user turn a correction record puts between the worse answer and the corrected one.
CORRECTION_REQUEST = "Your answer above is wrong or could be better. Write a corrected answer."


class Candidate(BaseModel):
    """One answer a graph produced for a row."""

    model_config = ConfigDict(extra="forbid")

    text: str
    score: float = Field(description="higher is better; comparable only within one trajectory")
    label: str = Field(default="", description="where it came from: original, round 2, gold, model ...")
    correct: bool | None = Field(default=None, description="an environment's verdict (EM vs gold), if any")


class Candidates(BaseModel):
    """The prompt of a row and the candidate answers to it (``result["candidates"]`` has this shape)."""

    model_config = ConfigDict(extra="forbid")

    prompt: list[dict[str, str]] = Field(min_length=1, description="chat messages before the answer")
    answers: list[Candidate] = Field(default_factory=list)
    gold: list[str] = Field(default_factory=list, description="reference answers, for rewards")

    def best(self) -> Candidate | None:
        """The highest-scored answer that is not known to be wrong (the first of equals)."""
        usable = [a for a in self.answers if a.correct is not False and a.text.strip()]
        return max(usable, key=lambda a: a.score) if usable else None

    def pair(self) -> tuple[Candidate, Candidate] | None:
        """(better, worse): the best answer and the lowest-scored one, when they truly differ."""
        best = self.best()
        if best is None:
            return None
        worse = [
            a
            for a in self.answers
            if a.text.strip() and a.score < best.score and a.text.strip() != best.text.strip()
        ]
        return (best, min(worse, key=lambda a: a.score)) if worse else None


CandidatesOf = Callable[[Trajectory], Candidates | None]


def result_candidates(trajectory: Trajectory) -> Candidates | None:
    """The candidates a graph wrote into ``result["candidates"]`` (None when it wrote none)."""
    raw = trajectory.result.get("candidates")
    if raw is None:
        return None
    try:
        return Candidates.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ExportError(
            f"trajectory {trajectory.id} (graph '{trajectory.graph}'): result.candidates is invalid: "
            f"{problems}. See synth.dataset.reuse.Candidates for the shape to_trajectory must write."
        ) from None


def standard_exports(
    candidates_of: CandidatesOf = result_candidates, *, empty_reasons: Mapping[str, str] | None = None
) -> dict[str, ExportFormat]:
    """``sft``, ``dpo``, ``corrections`` and ``rl`` built from ``candidates_of`` (see the module doc).

    ``empty_reasons`` overrides the generic explanation of an empty export per format name.
    """

    def sft_rows(trajectory: Trajectory) -> Iterator[dict[str, Any]]:
        found = candidates_of(trajectory)
        best = found.best() if found else None
        if found and best:
            yield {"id": trajectory.id, "messages": [*found.prompt, assistant_turn(best.text)]}

    def dpo_rows(trajectory: Trajectory) -> Iterator[dict[str, Any]]:
        found = candidates_of(trajectory)
        pair = found.pair() if found else None
        if found and pair:
            yield {
                "id": trajectory.id,
                "prompt": found.prompt,
                "chosen": [assistant_turn(pair[0].text)],
                "rejected": [assistant_turn(pair[1].text)],
            }

    def correction_rows(trajectory: Trajectory) -> Iterator[dict[str, Any]]:
        found = candidates_of(trajectory)
        pair = found.pair() if found else None
        if found and pair:
            better, worse = pair
            yield {
                "id": trajectory.id,
                "prompt": [
                    *found.prompt,
                    assistant_turn(worse.text),
                    {"role": "user", "content": CORRECTION_REQUEST},
                ],
                "completion": [assistant_turn(better.text)],
            }

    def rl_rows(trajectory: Trajectory) -> Iterator[dict[str, Any]]:
        found = candidates_of(trajectory)
        if found is None:
            return
        best = found.best()
        yield {
            "id": trajectory.id,
            "prompt": found.prompt,
            "answers": found.gold,
            "reference": best.text if best else "",
        }

    no_candidates = "no ok trajectory declares candidate answers (result.candidates, see synth.dataset.reuse)"
    no_pair = "no ok trajectory has a better and a worse answer (scores all equal, or a single candidate)"
    reasons = {"sft": no_candidates, "dpo": no_pair, "corrections": no_pair, "rl": no_candidates}
    reasons.update(empty_reasons or {})
    return {
        "sft": ExportFormat(
            "sft", "messages: prompt -> the best answer (never one known to be wrong)", sft_rows,
            sft_features, empty_reason=reasons["sft"],
        ),
        "dpo": ExportFormat(
            "dpo", "prompt/chosen/rejected: the best answer over the worst-scored one", dpo_rows,
            dpo_features, empty_reason=reasons["dpo"],
        ),
        "corrections": ExportFormat(
            "corrections",
            "prompt/completion: prompt, the worse answer and a request to correct it -> the best answer",
            correction_rows, prompt_completion_features, empty_reason=reasons["corrections"],
        ),
        "rl": ExportFormat(
            "rl", "prompt + reward fields: gold answers (may be empty) and the best answer as reference",
            rl_rows, rl_features, empty_reason=reasons["rl"],
        ),
    }  # fmt: skip
