"""Which sections a report has: the generic ones for every run, plus the graph's own.

A graph contributes its own section with a factory ``(RunContext) -> Section`` (see
:class:`synth.report.model.Section`: ``add(record)`` for every record, then ``view(charts)``), found in
this order:

1. :func:`register_section` called in this process (tests, notebooks, a script that then reports);
2. an installed package's entry point in the group ``synth.report_sections`` (name = graph name,
   value = ``module:Factory``), as graphs are found through ``synth.graphs``;
3. the graph's own ``SynthGraph.report_section`` (the run's graph, resolved as ``synth run`` did), so
   the report knows no graph by name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points

from synth.errors import SynthError
from synth.report.core import ErrorsSection, ExamplesSection, FiltersSection, OverviewSection
from synth.report.model import RunContext, Section
from synth.report.roles import RolesSection, ScoresSection

SectionFactory = Callable[[RunContext], Section]

ENTRY_POINT_GROUP = "synth.report_sections"
_registered: dict[str, SectionFactory] = {}


def register_section(graph: str, factory: SectionFactory) -> None:
    """Make ``factory`` build the report section of runs of ``graph`` (replaces a built-in one)."""
    _registered[graph] = factory


def unregister_section(graph: str) -> None:
    _registered.pop(graph, None)


def graph_section_factory(graph: str) -> SectionFactory | None:
    """The section hook of ``graph`` (a name, or the reference the run was started with), or None when it
    has none (the generic sections still apply)."""
    if graph in _registered:
        return _registered[graph]
    target = next((ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == graph), None)
    if target is None:
        declared = _declared_section(graph)
        if declared is None or callable(declared):
            return declared
        target = declared
    module_name, _, attribute = target.partition(":")
    try:
        factory: SectionFactory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise SynthError(
            f"report section for graph '{graph}' ({target}) cannot be loaded: {exc}. "
            f"Fix the graph's report_section or the '{ENTRY_POINT_GROUP}' entry point that names it."
        ) from exc
    return factory


def _declared_section(graph: str) -> SectionFactory | str | None:
    """The ``report_section`` the run's graph declares; None when the graph cannot be loaded any more
    (a moved graph file, an uninstalled plugin): its run still gets the generic sections."""
    from synth.engine.session import resolve_graph

    try:
        return resolve_graph(graph).report_section if graph else None
    except (SynthError, ImportError, OSError):
        return None


def sections_for(context: RunContext) -> list[Section]:
    """The report's sections in page order; the graph's own comes right after the overview."""
    factories: list[SectionFactory] = [OverviewSection]
    own = graph_section_factory(context.graph)
    if own is not None:
        factories.append(own)
    factories += [ScoresSection, RolesSection, FiltersSection, ErrorsSection, ExamplesSection]
    return [factory(context) for factory in factories]
