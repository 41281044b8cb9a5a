"""Pictures of role graphs: Mermaid text and PNGs rendered offline by graphviz ``dot``.

Both come from the compiled LangGraph graph's own structure (``get_graph()`` nodes and edges), built
with inert model clients so nothing is called. Conditional edges (routers) are dashed, as in LangGraph's
Mermaid. ``draw_mermaid_png`` would call a remote rendering API, so PNGs go through the ``dot`` binary
(Debian package ``graphviz``; ``make sysdeps`` installs it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from synth.errors import SynthError
from synth.graph import ModelSet, SynthGraph

_START, _END = "__start__", "__end__"


def inert_build(graph: SynthGraph) -> Any:
    """The compiled graph with a replay client that is never called (for drawing and inspection).

    The client also claims log-probability scoring (graphs such as ATM refuse to build without it);
    calling it is an error, since drawing never runs a node.
    """
    from autogen_core.models import ModelInfo
    from autogen_ext.models.replay import ReplayChatCompletionClient

    class InertClient(ReplayChatCompletionClient):
        async def continuation_nll(self, requests: Any) -> list[float]:
            raise RuntimeError("the inert client only exists to draw graphs; it scores nothing")

    info = ModelInfo(
        vision=False, function_calling=False, json_output=True, family="unknown", structured_output=True
    )
    models = ModelSet(default=InertClient([], model_info=info), specs={"default": "replay:none"})
    with tempfile.TemporaryDirectory() as folder:
        options: dict[str, Any] = {}
        if "corpus" in graph.default_options:  # retrieval graphs need a corpus to build; any will do
            corpus = Path(folder) / "corpus.jsonl"
            corpus.write_text(json.dumps({"id": "p1", "title": "t", "text": "a passage"}) + "\n")
            options["corpus"] = str(corpus)
        return graph.build(models, **graph.resolve_options(options))


def mermaid(graph: SynthGraph) -> str:
    """Mermaid text of the compiled graph (paste into any Mermaid viewer, or GitHub markdown)."""
    return str(inert_build(graph).get_graph().draw_mermaid())


def to_dot(graph: SynthGraph) -> str:
    """Graphviz DOT of the compiled graph: rounded boxes for nodes, dashed conditional edges."""
    drawn = inert_build(graph).get_graph()
    lines = [
        f"digraph {_quote(graph.name)} {{",
        '  graph [rankdir=TB, fontname="Helvetica", nodesep=0.4, ranksep=0.45];',
        '  node [shape=box, style="rounded,filled", fillcolor="#f2f0ff", color="#6c5ce7",'
        ' fontname="Helvetica"];',
        '  edge [color="#555555", arrowsize=0.7];',
    ]
    for node_id in drawn.nodes:
        if node_id == _START:
            lines.append(f'  {_quote(node_id)} [label="start", shape=oval, fillcolor="#ffffff"];')
        elif node_id == _END:
            lines.append(f'  {_quote(node_id)} [label="end", shape=oval, fillcolor="#bfb6fc"];')
        else:
            lines.append(f"  {_quote(node_id)} [label={_quote(node_id)}];")
    for edge in sorted(drawn.edges, key=lambda e: (e.source, e.target)):
        style = " [style=dashed]" if edge.conditional else ""
        lines.append(f"  {_quote(edge.source)} -> {_quote(edge.target)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_png(graph: SynthGraph, out: Path) -> Path:
    """Write the graph as a PNG with graphviz ``dot``; a clear error when ``dot`` is not installed."""
    dot = shutil.which("dot")
    if dot is None:
        raise SynthError(
            "graphviz `dot` was not found on PATH, so no PNG can be drawn: install it with "
            "`apt-get install graphviz` (or `make sysdeps`), or use the Mermaid text instead"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [dot, "-Tpng", "-Gdpi=110", "-o", str(out)], input=to_dot(graph), text=True, capture_output=True
    )
    if done.returncode != 0:
        raise SynthError(f"graphviz dot failed to draw {graph.name}: {done.stderr.strip()[:500]}")
    return out


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
