"""ATM (Zhu et al., EMNLP 2024): attacker fabrications ranked by generator NLL, clean vs attacked answers.

``graph.py`` the graph (``GRAPH``) and state; ``seed.py`` the seed rows and their passages;
``perturb.py`` the list perturbations; ``trajectory.py`` the final state -> the result (``AtmResult``);
``exports.py`` the export formats; ``report.py`` the report section. The roles are in ``roles/atm.py``;
the training loop that uses it in ``train/atm_*.py``.
"""

from graphs.atm.graph import GRAPH

__all__ = ["GRAPH"]
