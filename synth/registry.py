"""Finding graphs by name: built-ins and any installed package's ``synth.graphs`` entry points."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from functools import cache
from importlib.metadata import entry_points

from synth.errors import SynthError
from synth.graph import SynthGraph


@cache
def builtin() -> dict[str, str]:
    """Built-in graph name -> ``graphs.NAME:GRAPH``: each package ``graphs/NAME/`` exports its ``GRAPH``.

    They are also entry points in pyproject.toml; found here too so a source checkout that is not
    pip-installed lists them. Listing the folders imports nothing (not even ``graphs``), and nothing runs
    at import time, so the CLI can first check that no user file shadows the package
    (:func:`synth.extras.check_project_packages`)."""
    try:
        spec = importlib.util.find_spec("graphs")
    except (ImportError, ValueError):
        return {}
    if spec is None or not spec.submodule_search_locations:  # installed without the built-in graphs
        return {}
    packages = sorted(m.name for m in pkgutil.iter_modules(spec.submodule_search_locations) if m.ispkg)
    return {name: f"graphs.{name}:GRAPH" for name in packages}


def available() -> dict[str, str]:
    """Graph name -> ``module:attribute`` for every graph that can be loaded."""
    found = dict(builtin())
    for ep in entry_points(group="synth.graphs"):
        found[ep.name] = ep.value
    return found


def load_graph(name: str) -> SynthGraph:
    """The graph registered as ``name``; an unknown name lists the known ones."""
    targets = available()
    if name not in targets:
        raise SynthError(f"unknown graph '{name}'; available: {', '.join(sorted(targets))}")
    module_name, _, attribute = targets[name].partition(":")
    graph = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(graph, SynthGraph):
        raise SynthError(f"{targets[name]} is a {type(graph).__name__}, not a synth.graph.SynthGraph")
    return graph
