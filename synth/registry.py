"""Finding graphs by name: built-ins and any installed package's ``synth.graphs`` entry points."""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from synth.errors import SynthError
from synth.graph import SynthGraph


def builtin() -> dict[str, str]:
    """The built-in graphs: each package ``graphs/NAME/`` exports its ``GRAPH``. They are also entry points
    in pyproject.toml; found here too so a source checkout that is not pip-installed lists them."""
    try:
        import graphs
    except ImportError:  # installed without the built-in graphs
        return {}
    packages = sorted(m.name for m in pkgutil.iter_modules(graphs.__path__) if m.ispkg)
    return {name: f"graphs.{name}:GRAPH" for name in packages}


#: Built-in graph name -> ``graphs.NAME:GRAPH`` (listing folders imports no graph).
BUILTIN = builtin()


def available() -> dict[str, str]:
    """Graph name -> ``module:attribute`` for every graph that can be loaded."""
    found = dict(BUILTIN)
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
