"""Built-in role graphs, one package each: ``graphs/NAME/`` holds the graph (``graph.py``, its ``GRAPH``),
its result model, exports and report section side by side; its roles are ``roles/NAME.py``."""
