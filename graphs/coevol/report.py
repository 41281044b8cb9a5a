"""CoEvol's section: rounds accepted per row, why the loop stopped, and what the judge said.

Reads ``result.accepted_rounds``, ``result.stop_reason`` and ``result.rounds[].scores`` (``previous``,
``new``, ``verdicts``, ``judge_error``) as graphs/coevol/graph.py writes them; rows without them are skipped.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from synth.report.model import BoundedCounter, ChartMaker, Distribution, RunContext, SectionView, Table, ratio
from synth.trajectory import Trajectory


class CoEvolSection:
    def __init__(self, context: RunContext) -> None:
        self.max_rounds = (context.config.get("options") or {}).get("max_rounds")
        self.rows = 0
        self.rows_accepting = 0
        self.accepted = Distribution()
        self.stop_reasons: BoundedCounter = BoundedCounter()
        self.verdicts: Counter[str] = Counter()
        self.margin = Distribution()  # judge score of the revision minus the previous response's
        self.rounds_judged = 0
        self.judge_errors = 0
        self.accepted_at: Counter[int] = Counter()
        self.judged_at: Counter[int] = Counter()

    def add(self, record: Trajectory) -> None:
        result = record.result
        if not isinstance(result.get("accepted_rounds"), int):
            return
        self.rows += 1
        self.accepted.add(result["accepted_rounds"])
        self.rows_accepting += result["accepted_rounds"] > 0
        self.stop_reasons.add(str(result.get("stop_reason") or "(none)"))
        for number, round_ in enumerate(result.get("rounds") or [], start=1):
            if isinstance(round_, dict):
                self._add_round(number, round_)

    def _add_round(self, number: int, round_: dict[str, Any]) -> None:
        scores = round_.get("scores") or {}
        self.rounds_judged += 1
        self.judged_at[number] += 1
        self.accepted_at[number] += bool(round_.get("accepted"))
        if scores.get("judge_error"):
            self.judge_errors += 1
            return
        for verdict in scores.get("verdicts") or []:
            self.verdicts[str(verdict) if verdict is not None else "(unparsed)"] += 1
        new, previous = scores.get("new"), scores.get("previous")
        if isinstance(new, int | float) and isinstance(previous, int | float):
            self.margin.add(new - previous)

    def view(self, charts: ChartMaker) -> SectionView | None:
        if not self.rows:
            return None
        rounds = charts.hist(
            "coevol-rounds", "Rounds accepted per row", self.accepted.values(), xlabel="accepted rounds"
        )
        margin = charts.hist(
            "coevol-judge-margin",
            "Judge score: revision minus previous (averaged over both orders)",
            self.margin.values(),
            xlabel="score difference",
            bins=9,
        )
        verdicts = self.verdicts.most_common()
        verdict_chart = charts.bar(
            "coevol-verdicts",
            "Judge verdicts (each order)",
            [v for v, _ in verdicts],
            [n for _, n in verdicts],
        )
        per_round = [
            [n, self.judged_at[n], ratio(self.accepted_at[n], self.judged_at[n])]
            for n in sorted(self.judged_at)
        ]
        return SectionView(
            title="CoEvol: rounds and judge",
            anchor="coevol",
            intro="A revision is accepted only when the judge, run in both orders, scores it strictly "
            "higher.",
            facts=[
                ("rows with a result", self.rows),
                ("max_rounds", self.max_rounds if self.max_rounds is not None else "?"),
                ("mean rounds accepted", f"{self.accepted.mean:.2f}"),
                ("rows with at least one accepted round", ratio(self.rows_accepting, self.rows)),
                ("rounds judged", self.rounds_judged),
                ("judge failed in both orders", ratio(self.judge_errors, self.rounds_judged)),
            ],
            charts=[c for c in (rounds, margin, verdict_chart) if c],
            tables=[
                Table("Acceptance by round", ["round", "judged", "accepted"], per_round),
                Table(
                    "Why the loop stopped",
                    ["stop reason", "rows"],
                    [list(x) for x in self.stop_reasons.most_common()],
                ),
            ],
        )
