"""LangGraph Studio / ``langgraph dev`` entry points: the built-in graphs, compiled, with default models.

``langgraph.json`` at the repository root maps each built-in graph to ``./graphs/studio.py:NAME``. An
attribute is built on first access (``graphs.studio.coevol``), for every graph in the registry's
built-ins, with:

- ``SYNTH_MODEL``: the model spec for every role (default ``local:gemma-3-270m``; the embedded model is
  loaded by its first call, never at import or build time);
- ``SYNTH_CORPUS``: passages for the retrieval graphs (SMART, ATM; default ``examples/studio_corpus.jsonl``).

A graph's input is its initial state: ``{"seed": {...seed row...}, "steps": []}``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "local:gemma-3-270m"
DEFAULT_CORPUS = Path(__file__).resolve().parent.parent / "examples" / "studio_corpus.jsonl"
_BUILT: dict[str, Any] = {}


def compiled(name: str) -> Any:
    """The compiled LangGraph graph of built-in graph ``name`` with the environment's default models."""
    from synth.registry import load_graph
    from synth.session import RunRequest, build_models

    graph = load_graph(name)
    spec = os.environ.get("SYNTH_MODEL", DEFAULT_MODEL)
    request = RunRequest(graph=name, input=Path("studio"), out=Path("studio"), models={"default": spec})
    models = build_models(request.models, request)
    options: dict[str, Any] = {}
    if "corpus" in graph.default_options:
        options["corpus"] = os.environ.get("SYNTH_CORPUS", str(DEFAULT_CORPUS))
    return graph.build(models, **graph.resolve_options(options))


def names() -> list[str]:
    from synth.registry import BUILTIN

    return sorted(BUILTIN)


def __getattr__(name: str) -> Any:
    if name not in names():
        raise AttributeError(f"graphs.studio has no graph {name!r}; built-in graphs: {', '.join(names())}")
    if name not in _BUILT:
        _BUILT[name] = compiled(name)
    return _BUILT[name]
