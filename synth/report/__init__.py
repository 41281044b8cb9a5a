"""Run reports: ``synth report runs/NAME`` writes ``report/index.html`` and PNG charts.

``write_report`` streams the run's records once through a list of sections (generic ones plus the
graph's own, see :mod:`synth.report.sections`) and renders a self-contained page.
"""

from synth.report.build import ReportResult, write_report
from synth.report.model import (
    BoundedCounter,
    Chart,
    ChartMaker,
    Distribution,
    RunContext,
    Section,
    SectionView,
    Table,
)
from synth.report.sections import register_section, unregister_section

__all__ = [
    "BoundedCounter",
    "Chart",
    "ChartMaker",
    "Distribution",
    "ReportResult",
    "RunContext",
    "Section",
    "SectionView",
    "Table",
    "register_section",
    "unregister_section",
    "write_report",
]
