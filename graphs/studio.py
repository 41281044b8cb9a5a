"""LangGraph Studio / ``langgraph dev`` entry points: one graph factory per built-in graph.

``langgraph.json`` at the repository root maps each built-in graph to ``./graphs/studio.py:NAME``. The
LangGraph server reads these names as plain module attributes and calls each with the run's config
(see :mod:`synth.studio`). Options come from the config's ``configurable`` (or the run's ``context``):

- ``model``: the model spec for every role (default ``SYNTH_MODEL``, else ``local:gemma-3-270m``; the
  embedded model is loaded by its first call, never at import or build time);
- the graph's own options (``max_rounds``, ``judge_mode``, ``top_k``, ...), with ``corpus`` defaulting to
  ``SYNTH_CORPUS``, else ``examples/studio_corpus.jsonl``, for the retrieval graphs (SMART, ATM).

A graph's input is its initial state: ``{"seed": {...seed row...}, "steps": []}``.
"""

from __future__ import annotations

from synth.studio import factory

atm = factory("atm")
coevol = factory("coevol")
smart = factory("smart")
