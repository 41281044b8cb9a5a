"""Per-role cost and speed (tokens and latency percentiles), and distributions of the rows' scores."""

from __future__ import annotations

from dataclasses import dataclass, field

from synth.report.model import ChartMaker, Distribution, RunContext, SectionView, Table
from synth.trajectory import Step, Trajectory

PERCENTILES = (50, 90, 99)
#: Distinct score names shown; a graph with more numeric scores than this gets the first ones.
MAX_SCORES = 12


@dataclass
class RoleStats:
    steps: int = 0
    failed: int = 0
    cached: int = 0
    repaired: int = 0
    prompt: Distribution = field(default_factory=Distribution)
    completion: Distribution = field(default_factory=Distribution)
    latency: Distribution = field(default_factory=Distribution)

    def add(self, step: Step) -> None:
        self.steps += 1
        self.failed += not step.ok
        self.cached += step.cached
        self.repaired += step.repaired
        self.prompt.add(step.usage.prompt_tokens)
        self.completion.add(step.usage.completion_tokens)
        self.latency.add(step.latency_s or step.usage.latency_s)


def _tokens(d: Distribution) -> str:
    return f"{d.total:.0f} ({d.percentile(50):.0f} / {d.percentile(90):.0f})"


def _latency(d: Distribution) -> list[str]:
    if d.high <= 0:  # the graph did not time this role's calls
        return ["—"] * (len(PERCENTILES) + 1)
    return [f"{d.percentile(q):.3f}" for q in PERCENTILES] + [f"{d.high:.3f}"]


class RolesSection:
    """For each role: steps, failures, cache hits, prompt/completion tokens and latency percentiles."""

    def __init__(self, context: RunContext) -> None:
        self.roles: dict[str, RoleStats] = {}

    def add(self, record: Trajectory) -> None:
        for step in record.steps:
            stats = self.roles.get(step.role)
            if stats is None:
                stats = self.roles[step.role] = RoleStats()
            stats.add(step)

    def view(self, charts: ChartMaker) -> SectionView | None:
        if not self.roles:
            return None
        names = list(self.roles)
        rows = [
            [
                name,
                s.steps,
                s.failed,
                s.cached,
                s.repaired,
                _tokens(s.prompt),
                _tokens(s.completion),
                *_latency(s.latency),
            ]
            for name, s in self.roles.items()
        ]
        headers = [
            "role",
            "steps",
            "failed",
            "cached",
            "repaired",
            "prompt tokens total (p50 / p90)",
            "completion tokens total (p50 / p90)",
            *(f"latency p{q} s" for q in PERCENTILES),
            "max s",
        ]
        tokens = charts.grouped(
            "roles-tokens",
            "Tokens per role (total)",
            names,
            {
                "prompt": [self.roles[n].prompt.total for n in names],
                "completion": [self.roles[n].completion.total for n in names],
            },
            xlabel="tokens",
        )
        timed = [n for n in names if self.roles[n].latency.high > 0]
        latency = charts.grouped(
            "roles-latency",
            "Latency per role call",
            timed,
            {f"p{q}": [self.roles[n].latency.percentile(q) for n in timed] for q in PERCENTILES},
            xlabel="seconds",
        )
        return SectionView(
            title="Roles: tokens and latency",
            anchor="roles",
            intro="One step per role call. Latency includes retries and backoff of the call; cached calls "
            "cost no tokens. Percentiles are exact up to 50,000 steps per role, then from a uniform sample.",
            charts=[c for c in (tokens, latency) if c],
            tables=[Table("Per role", headers, rows)],
        )


class ScoresSection:
    """Histograms of every numeric top-level field of the rows' ``scores`` (any graph)."""

    def __init__(self, context: RunContext) -> None:
        self.scores: dict[str, Distribution] = {}

    def add(self, record: Trajectory) -> None:
        for key, value in record.scores.items():
            if isinstance(value, bool | int | float) and (
                key in self.scores or len(self.scores) < MAX_SCORES
            ):
                if key not in self.scores:
                    self.scores[key] = Distribution()
                self.scores[key].add(float(value))

    def view(self, charts: ChartMaker) -> SectionView | None:
        if not self.scores:
            return None
        rows = [
            [key, d.count, f"{d.mean:.3f}", f"{d.low:g}", f"{d.percentile(50):g}", f"{d.high:g}"]
            for key, d in self.scores.items()
        ]
        made = [  # a score that never varies says all it has in the table
            charts.hist(f"score-{key}", f"Score: {key}", d.values(), xlabel=key)
            for key, d in self.scores.items()
            if d.low < d.high
        ]
        return SectionView(
            title="Scores",
            anchor="scores",
            intro="Numeric fields of each row's `scores` (booleans count as 0/1).",
            charts=[c for c in made if c],
            tables=[Table("Score distributions", ["score", "rows", "mean", "min", "median", "max"], rows)],
        )
