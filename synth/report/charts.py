"""PNG charts for the report, drawn with matplotlib's Agg renderer and no pyplot.

Figures are plain ``matplotlib.figure.Figure`` objects (no global pyplot state, no GUI backend, nothing
to close), rendered to PNG with Agg. Labels come from the run's data (error kinds, filter reasons, role
names), so mathtext parsing is off (a ``$`` in a reason must not be read as TeX) and labels are cut short.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.typing import RcKeyType

from synth.report.model import Chart

DPI = 100
WIDTH_IN = 5.4  # two charts side by side on a laptop screen
LABEL_CHARS = 40
TITLE_CHARS = 80
#: Matplotlib settings while drawing: no mathtext (labels are data), small fonts, no top/right spines.
RC: dict[RcKeyType, Any] = {
    "text.parse_math": False,
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]


def _label(text: str, limit: int = LABEL_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ChartWriter:
    """Writes charts into ``folder``; each method returns the :class:`Chart` or None when there is no data.

    Use it as a context manager: inside, matplotlib's settings are the report's (mathtext off, small
    fonts) without changing them for anything else in the process.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._names: set[str] = set()
        self._settings = matplotlib.rc_context(RC)

    def __enter__(self) -> ChartWriter:
        self._settings.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._settings.__exit__(*exc_info)

    def bar(
        self, name: str, title: str, labels: list[str], values: list[float], *, xlabel: str = ""
    ) -> Chart | None:
        """Horizontal bars, one per label, with the value printed at the end of each bar."""
        if not labels:
            return None
        figure = self._figure(height=0.9 + 0.32 * len(labels))
        axes = figure.subplots()
        positions = np.arange(len(labels))
        bars = axes.barh(positions, values, color=COLOURS[0])
        axes.bar_label(bars, labels=[f"{v:g}" for v in values], padding=3, fontsize=8)
        axes.set_yticks(positions, [_label(x) for x in labels], fontsize=8)
        axes.invert_yaxis()
        axes.set_xlabel(xlabel)
        axes.margins(x=0.15)
        return self._save(figure, name, title)

    def grouped(
        self, name: str, title: str, labels: list[str], series: dict[str, list[float]], *, xlabel: str = ""
    ) -> Chart | None:
        """Horizontal grouped bars: for each label, one bar per series (e.g. p50 / p90 / p99)."""
        if not labels or not series:
            return None
        figure = self._figure(height=1.5 + 0.22 * len(labels) * len(series))
        axes = figure.subplots()
        height = 0.8 / len(series)
        positions = np.arange(len(labels))
        for number, (key, values) in enumerate(series.items()):
            axes.barh(
                positions + number * height, values, height, label=_label(key), color=COLOURS[number % 6]
            )
        axes.set_yticks(positions + height * (len(series) - 1) / 2, [_label(x) for x in labels], fontsize=8)
        axes.invert_yaxis()
        axes.set_xlabel(xlabel)
        figure.legend(loc="outside lower center", ncols=len(series), fontsize=8, frameon=False)
        return self._save(figure, name, title)

    def hist(self, name: str, title: str, values: Any, *, xlabel: str = "", bins: int = 20) -> Chart | None:
        """A histogram; integer-valued data gets one bin per integer (rounds, counts)."""
        data = np.asarray(values, dtype=np.float64)
        if data.size == 0:
            return None
        low, high = float(data.min()), float(data.max())
        edges: Any = bins
        integral = bool(np.all(data == np.round(data))) and high - low <= 50
        if integral:
            edges = np.arange(low - 0.5, high + 1.5)
        figure = self._figure(height=3.0)
        axes = figure.subplots()
        axes.hist(data, bins=edges, color=COLOURS[0], edgecolor="white")
        if integral:
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel(xlabel)
        axes.set_ylabel("count")
        return self._save(figure, name, title)

    def _figure(self, height: float) -> Figure:
        figure = Figure(figsize=(WIDTH_IN, min(max(height, 2.2), 14.0)), dpi=DPI, layout="constrained")
        FigureCanvasAgg(figure)
        return figure

    def _save(self, figure: Figure, name: str, title: str) -> Chart:
        figure.suptitle(_label(title, TITLE_CHARS), fontsize=10)
        file = self._file_name(name)
        figure.savefig(self.folder / file, dpi=DPI)
        width, height = (round(x * DPI) for x in figure.get_size_inches())
        return Chart(file=file, alt=title, width=width, height=height)

    def _file_name(self, name: str) -> str:
        """A safe, unique file name for ``name`` (section keys may come from user graphs)."""
        stem = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "chart"
        candidate, number = stem, 2
        while candidate in self._names:
            candidate, number = f"{stem}-{number}", number + 1
        self._names.add(candidate)
        return candidate + ".png"
