"""CoEvol (Li et al., EMNLP 2024): debate, advise, edit and judge to evolve a response.

``graph.py`` the graph (``GRAPH``), state and seed; ``result.py`` the result model; ``exports.py`` the
export formats; ``report.py`` the report section. The roles are in ``roles/coevol.py``.
"""

from graphs.coevol.graph import GRAPH

__all__ = ["GRAPH"]
