"""SMART (Yue et al. 2024): intent reconstruction, retrieval, fact location and response.

``graph.py`` the graph (``GRAPH``), state and seed; ``result.py`` the result model; ``exports.py`` the
export formats; ``report.py`` the report section. The roles are in ``roles/smart.py``; the QA helpers it
shares with ATM and ``train/`` in :mod:`synth.qa`.
"""

from graphs.smart.graph import GRAPH

__all__ = ["GRAPH"]
