"""``synth graphs list|show`` and ``synth roles list``: the installed graphs and roles, and their shape."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from synth.graph import SynthGraph
from synth.registry import available, load_graph

graphs_app = typer.Typer(help="Installed role graphs.", no_args_is_help=True)
roles_app = typer.Typer(help="Roles of the installed graphs.", no_args_is_help=True)


@roles_app.callback()
def _roles_group() -> None:
    """Keeps ``roles`` a command group (``synth roles list``) although it has one command."""


@graphs_app.command("list")
def list_graphs() -> None:
    """Name, description, roles and export formats of every installed graph."""
    from synth.dataset.export import formats_for

    table = Table("graph", "description", "roles", "exports")
    for name in sorted(available()):
        graph = load_graph(name)
        formats = ", ".join(formats_for(graph))
        table.add_row(name, graph.description, ", ".join(r.name for r in graph.roles), formats)
    Console().print(table)


@graphs_app.command("show")
def show_graph(
    name: Annotated[str, typer.Argument(help="Graph name, path/graph.yaml, or path/file.py:NAME.")],
    png: Annotated[
        Path | None, typer.Option("--png", help="Also draw the graph as a PNG here (graphviz `dot`).")
    ] = None,
) -> None:
    """Print the graph's topology as Mermaid (paste into any Mermaid viewer, or GitHub markdown)."""
    from synth.engine.session import resolve_graph
    from synth.pictures import render_png

    graph = resolve_graph(name)
    print(mermaid(graph))
    if png is not None:
        render_png(graph, png)
        Console(stderr=True).print(f"wrote {png}")


@roles_app.command("list")
def list_roles() -> None:
    """Every role of every installed graph: its output fields and template hash."""
    table = Table("graph", "role", "output fields", "template", "description")
    for name in sorted(available()):
        for role in load_graph(name).roles:
            fields = ", ".join(role.output.model_fields) if role.output else "(text)"
            table.add_row(name, role.name, fields, role.template_hash, role.description)
    Console().print(table)


def mermaid(graph: SynthGraph) -> str:
    """Mermaid text of the compiled graph, built with inert model clients (nothing is called)."""
    from synth.pictures import mermaid as draw

    return draw(graph)
