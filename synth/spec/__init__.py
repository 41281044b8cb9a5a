"""YAML graph specs: ``synth run path/to/graph.yaml`` compiles a spec into the same SynthGraph as Python.

See docs/graphs.md for the format. :func:`load_spec` loads safely (no Python tags), validates with
pydantic, checks the graph (every error names file:line and the node), and compiles it.
"""

from __future__ import annotations

from pathlib import Path

from synth.graph import SynthGraph
from synth.spec.loader import SpecError

__all__ = ["SpecError", "is_spec_path", "load_spec"]


def is_spec_path(ref: str) -> bool:
    return ref.endswith((".yaml", ".yml"))


def load_spec(path: str | Path) -> SynthGraph:
    """The SynthGraph described by the YAML file at ``path``; raises SpecError naming file:line."""
    from synth.spec.build import synth_graph
    from synth.spec.check import check
    from synth.spec.loader import load_yaml

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"graph spec {path} does not exist")
    return synth_graph(check(path, load_yaml(path)))
