"""CoEvol's export formats: the standard ones (synth.dataset.reuse) from CoEvol's judged responses.

The candidates of a row are the responses the loop produced, ranked by the judge: the original scores 0
and each accepted revision one more than the response it replaced, so the evolved response is the best
and the original the worst. A revision the judge scored strictly lower than the response it revised
ranks just below that response (a tie says nothing and is left out). So ``sft`` is the evolved response,
``dpo`` is evolved over original when a round was accepted, and — with no round accepted — the original
over a revision the judge rejected; ``corrections`` turns the same pair into a correction record.
"""

from __future__ import annotations

from typing import Any

from synth.dataset.formats import user_turn
from synth.dataset.reuse import Candidate, Candidates, standard_exports
from synth.trajectory import Trajectory


def candidates(trajectory: Trajectory) -> Candidates | None:
    result = trajectory.result
    if not result.get("evolved") or not result.get("instruction"):
        return None
    answers = [Candidate(text=result["original"] or "", score=0.0, label="original")]
    accepted = 0
    for record in result.get("rounds", []):
        answers.extend(_round_candidates(record, accepted))
        accepted += bool(record.get("accepted"))
    final = float(result.get("accepted_rounds", 0))
    if final >= 1 and all(a.text != result["evolved"] for a in answers if a.score == final):
        answers.append(Candidate(text=result["evolved"], score=final, label="evolved"))
    return Candidates(prompt=[user_turn(result["instruction"], result.get("input") or "")], answers=answers)


def _round_candidates(record: dict[str, Any], accepted_before: int) -> list[Candidate]:
    label = f"round {record.get('round')}"
    if record.get("accepted"):
        return [Candidate(text=record["candidate"], score=accepted_before + 1.0, label=label)]
    scores = record.get("scores") or {}
    if not scores.get("judge_error") and scores.get("new", 0) < scores.get("previous", 0):
        return [Candidate(text=record["candidate"], score=accepted_before - 0.5, label=f"{label} (rejected)")]
    return []


EXPORTS = standard_exports(
    candidates,
    empty_reasons={
        "dpo": "no round was accepted by the judge, and no revision was judged strictly worse",
        "corrections": "no round was accepted by the judge, and no revision was judged strictly worse",
    },
)
