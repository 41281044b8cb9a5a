"""ATM's section: the generator's exact match on the clean vs the attacked context, fabrication NLLs and
attacker preference pairs.

Fields as graphs/atm/trajectory.py writes them, read defensively (ATM is young and its records may
change): each value is the first of its dotted paths (``scores.x`` / ``result.x``) that holds one, and a
value of the wrong type is skipped, never an error. A renamed field is one edit in :data:`FIELDS`.
Rows with neither flag nor fabrications are skipped; a run with none shows no ATM section at all.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from synth.report.model import ChartMaker, Distribution, RunContext, SectionView, Table, ratio
from synth.trajectory import Trajectory

FIELDS: dict[str, tuple[str, ...]] = {
    "clean": ("result.exact_match_clean", "scores.exact_match_clean"),
    "attacked": ("result.exact_match_attacked", "scores.exact_match_attacked"),
    "fabrications": ("result.fabrications",),
    "chosen": ("result.chosen",),
}
#: Per fabrication (a dict in the list above): its score, the generator's mean NLL of the gold answer
#: given that document alone (None when scoring failed).
NLL_KEY = "nll"


def lookup(record: Trajectory, paths: tuple[str, ...]) -> Any:
    """The first value found at one of ``paths`` (``scores.x`` / ``result.a.b``), else None."""
    roots = {"scores": record.scores, "result": record.result}
    for path in paths:
        head, *rest = path.split(".")
        value: Any = roots.get(head)
        for part in rest:
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value >= 0.5
    return None


class AtmSection:
    def __init__(self, context: RunContext) -> None:
        self.pairs: Counter[tuple[bool | None, bool | None]] = Counter()
        self.nll = Distribution()
        self.fabrications = Distribution()  # per row
        self.pairs_made = 0

    def add(self, record: Trajectory) -> None:
        clean = _flag(lookup(record, FIELDS["clean"]))
        attacked = _flag(lookup(record, FIELDS["attacked"]))
        if clean is not None or attacked is not None:
            self.pairs[(clean, attacked)] += 1
        fabrications = lookup(record, FIELDS["fabrications"])
        if isinstance(fabrications, list):
            self.pairs_made += isinstance(lookup(record, FIELDS["chosen"]), int)
            self.fabrications.add(len(fabrications))
            for item in fabrications:
                nll = item.get(NLL_KEY) if isinstance(item, dict) else None
                if isinstance(nll, int | float) and not isinstance(nll, bool):
                    self.nll.add(nll)

    def rate(self, side: int) -> tuple[int, int]:
        """(rows right, rows with a flag) on one side: 0 clean, 1 attacked."""
        flagged = [(pair[side], n) for pair, n in self.pairs.items() if pair[side] is not None]
        return sum(n for flag, n in flagged if flag), sum(n for _, n in flagged)

    def view(self, charts: ChartMaker) -> SectionView | None:
        if not self.pairs and not self.fabrications.count:
            return None
        (clean_hits, clean_rows), (attacked_hits, attacked_rows) = self.rate(0), self.rate(1)
        made = [
            charts.bar(
                "atm-exact-match",
                "Generator exact match: clean vs attacked context",
                ["clean", "attacked"],
                [
                    clean_hits / clean_rows if clean_rows else 0.0,
                    attacked_hits / attacked_rows if attacked_rows else 0.0,
                ],
                xlabel="exact-match rate",
            )
            if self.pairs
            else None,
            charts.hist(
                "atm-nll", "Fabrication score: mean NLL of the gold answer", self.nll.values(), xlabel="NLL"
            ),
        ]
        both = {k: n for k, n in self.pairs.items() if None not in k}
        table = Table(
            "Clean vs attacked (rows with both flags)",
            ["clean", "attacked", "rows"],
            [["right" if c else "wrong", "right" if a else "wrong", n] for (c, a), n in sorted(both.items())],
        )
        return SectionView(
            title="ATM: robustness to fabrications",
            anchor="atm",
            intro="Exact match of the generator's answer with the retrieved (clean) context and with the "
            "context that holds the attacker's fabrications; a higher NLL means a more misleading "
            "fabrication.",
            facts=[
                ("exact match, clean", ratio(clean_hits, clean_rows)),
                ("exact match, attacked", ratio(attacked_hits, attacked_rows)),
                (
                    "right when clean, wrong when attacked",
                    ratio(both.get((True, False), 0), sum(both.values())),
                ),
                ("fabrications per row (mean)", f"{self.fabrications.mean:.2f}"),
                ("rows with an attacker preference pair", ratio(self.pairs_made, self.fabrications.count)),
            ],
            charts=[c for c in made if c],
            tables=[table] if both else [],
        )
