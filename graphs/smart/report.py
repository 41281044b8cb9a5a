"""SMART's section: retrieval hit rates by rank, fact-locator relevance, branches and exact match.

Reads ``result.retrieval[].hits[]`` (``id``, 1-based ``rank``), ``result.facts[]`` (``passage`` with
``id``/``text``, ``relevant``, ``claimed_relevant``, ``rejected_spans``), ``result.answers``,
``result.branch`` and ``result.exact_match`` as graphs/smart/graph.py writes them. Two hit rates per rank r:
a passage in some query's top r contains a gold answer (after SQuAD normalisation), and a passage in
some query's top r was judged relevant by the Fact Locator with all its spans found in the passage.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from synth.metrics import has_answer
from synth.report.model import ChartMaker, Distribution, RunContext, SectionView, Table, ratio
from synth.trajectory import Trajectory


def _hits(retrieval: Any) -> list[tuple[Any, int]]:
    """(passage id, rank) of every hit of every query, skipping anything malformed."""
    if not isinstance(retrieval, list):
        return []
    return [
        (hit.get("id"), hit["rank"])
        for query in retrieval
        if isinstance(query, dict)
        for hit in query.get("hits") or []
        if isinstance(hit, dict) and isinstance(hit.get("rank"), int)
    ]


def _first_rank(hits: list[tuple[Any, int]], wanted: set[Any]) -> int | None:
    """The best (smallest) rank at which any query retrieved a passage in ``wanted``."""
    return min((rank for pid, rank in hits if pid in wanted), default=None)


class SmartSection:
    def __init__(self, context: RunContext) -> None:
        self.top_k = (context.config.get("options") or {}).get("top_k")
        self.rows = 0
        self.gold_rows = 0
        self.branches: Counter[str] = Counter()
        self.first_gold: Counter[int] = Counter()  # rank where a gold answer first appears, per row
        self.first_relevant: Counter[int] = Counter()
        self.passages = Distribution()
        self.relevant = Distribution()
        self.claimed = 0
        self.rejected = 0
        self.em_rows = 0
        self.em_hits = 0
        self.max_rank = 0

    def add(self, record: Trajectory) -> None:
        result = record.result
        facts = [
            f for f in result.get("facts") or [] if isinstance(f, dict) and isinstance(f.get("passage"), dict)
        ]
        hits = _hits(result.get("retrieval"))
        if "branch" not in result:
            return
        self.rows += 1
        self.branches[str(result.get("branch") or "(none)")] += 1
        self.passages.add(len(facts))
        relevant_ids = {f["passage"].get("id") for f in facts if f.get("relevant")}
        self.relevant.add(len(relevant_ids))
        self.claimed += sum(bool(f.get("claimed_relevant")) for f in facts)
        self.rejected += sum(bool(f.get("rejected_spans")) for f in facts)
        self.max_rank = max([self.max_rank, *(rank for _, rank in hits)])
        self._count_rank(self.first_relevant, _first_rank(hits, relevant_ids))
        answers = [str(a) for a in result.get("answers") or []]
        if answers:
            self.gold_rows += 1
            golden = {
                f["passage"].get("id")
                for f in facts
                if has_answer(str(f["passage"].get("text", "")), answers)
            }
            self._count_rank(self.first_gold, _first_rank(hits, golden))
        if isinstance(result.get("exact_match"), bool):
            self.em_rows += 1
            self.em_hits += result["exact_match"]

    @staticmethod
    def _count_rank(counter: Counter[int], rank: int | None) -> None:
        if rank is not None:
            counter[rank] += 1

    def hit_rate(self, counter: Counter[int], rank: int, rows: int) -> float:
        """Fraction of ``rows`` with a hit at rank ``rank`` or better."""
        return sum(n for r, n in counter.items() if r <= rank) / rows if rows else 0.0

    def view(self, charts: ChartMaker) -> SectionView | None:
        if not self.rows:
            return None
        ranks = list(range(1, self.max_rank + 1))
        series = {
            "passage judged relevant": [self.hit_rate(self.first_relevant, r, self.rows) for r in ranks]
        }
        if self.gold_rows:
            series["gold answer in a passage"] = [
                self.hit_rate(self.first_gold, r, self.gold_rows) for r in ranks
            ]
        hits = charts.grouped(
            "smart-hit-rate",
            "Retrieval hit rate by rank (any query)",
            [f"top {r}" for r in ranks],
            series,
            xlabel="fraction of rows",
        )
        relevant = charts.hist(
            "smart-relevant", "Passages judged relevant per row", self.relevant.values(), xlabel="passages"
        )
        branches = charts.bar(
            "smart-branches", "Response branch", list(self.branches), list(self.branches.values())
        )
        table = Table(
            "Hit rate by rank",
            ["rank ≤", *series],
            [[r, *(f"{values[i]:.3f}" for values in series.values())] for i, r in enumerate(ranks)],
        )
        return SectionView(
            title="SMART: retrieval and facts",
            anchor="smart",
            intro="Hit rate at rank r: some query's top r passages hold a hit. A passage counts as relevant "
            "only when the Fact Locator said so and every span it gave is in the passage.",
            facts=self._facts(),
            charts=[c for c in (hits, relevant, branches) if c],
            tables=[table] if ranks else [],
        )

    def _facts(self) -> list[tuple[str, Any]]:
        passages = self.passages.total
        return [
            ("rows with a result", self.rows),
            ("top_k", self.top_k if self.top_k is not None else "?"),
            ("rows with a relevant passage", ratio(sum(self.first_relevant.values()), self.rows)),
            ("rows whose passages hold a gold answer", ratio(sum(self.first_gold.values()), self.gold_rows)),
            ("passages judged relevant", ratio(self.relevant.total, passages)),
            ("passages claimed relevant with a span not in the passage", ratio(self.rejected, self.claimed)),
            ("model answer exact match (gold)", ratio(self.em_hits, self.em_rows)),
            ("mean passages per row", f"{self.passages.mean:.2f}"),
        ]
