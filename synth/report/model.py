"""What report sections produce (views the HTML template renders) and the streaming statistics they keep.

A report reads every record of a run once, in order, so sections hold aggregates, never rows: counters
with a bound on distinct keys and distributions that keep exact count/sum/min/max plus a bounded
reservoir sample for percentiles and histograms (exact while a run has fewer values than the cap).
That keeps a 100k-row run within a few megabytes.
"""

from __future__ import annotations

import random
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from synth.trajectory import Trajectory

#: Values kept per distribution for percentiles; beyond it, a uniform reservoir sample of this size.
SAMPLE_CAP = 50_000
#: Distinct keys kept per counter; later new keys are counted under OTHER.
COUNTER_CAP = 500
OTHER = "(other)"


class Distribution:
    """Count, sum, min and max of a stream of numbers, and percentiles from a bounded sample."""

    def __init__(self, cap: int = SAMPLE_CAP, seed: int = 0) -> None:
        self.count = 0
        self.total = 0.0
        self.low = float("inf")
        self.high = float("-inf")
        self._cap = cap
        self._seed = seed
        self._sample = array("d")
        self._rng: random.Random | None = None  # made once the sample is full

    def add(self, value: float) -> None:
        value = float(value)
        self.count += 1
        self.total += value
        if value < self.low:
            self.low = value
        if value > self.high:
            self.high = value
        if len(self._sample) < self._cap:
            self._sample.append(value)
        else:  # reservoir sampling (algorithm R): every value is kept with probability cap / count
            if self._rng is None:
                self._rng = random.Random(self._seed)  # seeded: the same run gives the same report
            slot = self._rng.randrange(self.count)
            if slot < self._cap:
                self._sample[slot] = value

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.frombuffer(self._sample, dtype=np.float64), q)) if self.count else 0.0

    def values(self) -> np.ndarray:
        """The kept values (all of them while ``count <= cap``), for histograms."""
        return np.frombuffer(self._sample, dtype=np.float64)


class BoundedCounter(Counter[str]):
    """A ``Counter`` that stops adding distinct keys at ``cap`` (then counts them under ``(other)``)."""

    def __init__(self, cap: int = COUNTER_CAP) -> None:
        super().__init__()
        self.cap = cap

    def add(self, key: str, n: int = 1) -> None:
        if key not in self and len(self) >= self.cap:
            key = OTHER
        self[key] += n


@dataclass(frozen=True)
class Chart:
    """A PNG written into the report folder; ``file`` is relative to index.html."""

    file: str
    alt: str
    width: int
    height: int


@dataclass
class Table:
    caption: str
    headers: list[str]
    rows: list[list[Any]]


@dataclass
class SectionView:
    """One section of the page. All text is escaped by the template: rows' content is untrusted."""

    title: str
    intro: str = ""
    facts: list[tuple[str, Any]] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    anchor: str = ""


@dataclass
class RunContext:
    """What a section may know besides the records: the run folder, its config and its log events."""

    folder: Path
    config: dict[str, Any]
    run_ends: list[dict[str, Any]]

    @property
    def graph(self) -> str:
        return str(self.config.get("graph", ""))

    def config_text(self) -> str:
        return yaml.safe_dump(self.config, sort_keys=False, allow_unicode=True)


class ChartMaker(Protocol):
    """What sections draw with (see :class:`synth.report.charts.ChartWriter`)."""

    def bar(
        self, name: str, title: str, labels: list[str], values: list[float], *, xlabel: str = ""
    ) -> Chart | None: ...

    def grouped(
        self, name: str, title: str, labels: list[str], series: dict[str, list[float]], *, xlabel: str = ""
    ) -> Chart | None: ...

    def hist(
        self, name: str, title: str, values: Any, *, xlabel: str = "", bins: int = 20
    ) -> Chart | None: ...


class Section(Protocol):
    """A part of the report: sees every record once (``add``), then describes itself (``view``).

    ``view`` returns None when it has nothing to show (e.g. no filtered rows). Graph-specific sections
    are registered per graph name (see :mod:`synth.report.sections`).
    """

    def add(self, record: Trajectory) -> None: ...

    def view(self, charts: ChartMaker) -> SectionView | None: ...


def ratio(part: float, whole: float) -> str:
    """``part`` of ``whole`` as a percentage with the counts, e.g. ``75.0% (3 / 4)``."""
    if not whole:
        return "n/a (0 rows)"
    return f"{100 * part / whole:.1f}% ({part:g} / {whole:g})"
