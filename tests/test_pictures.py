"""Graph pictures: Mermaid snapshots of the built-in graphs and the YAML example, PNGs drawn by dot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synth.cli.graphs import graphs_app
from synth.engine.session import resolve_graph
from synth.errors import SynthError
from synth.pictures import mermaid, render_png, to_dot
from synth.registry import builtin, load_graph

SNAPSHOTS = Path(__file__).parent / "snapshots"
REFLEXION = str(Path(__file__).parent.parent / "examples" / "reflexion.yaml")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", [*sorted(builtin()), "reflexion.yaml"])
def test_mermaid_matches_snapshot(name: str) -> None:
    graph = resolve_graph(REFLEXION) if name.endswith(".yaml") else load_graph(name)
    text = mermaid(graph)
    snapshot = SNAPSHOTS / f"{Path(name).stem}.mmd"
    if os.environ.get("SYNTH_UPDATE_SNAPSHOTS"):
        snapshot.write_text(text)
    assert snapshot.exists(), f"no snapshot for {name}: run SYNTH_UPDATE_SNAPSHOTS=1 pytest {__file__}"
    assert text == snapshot.read_text(), f"graph {name} changed shape; rerun with SYNTH_UPDATE_SNAPSHOTS=1"


def test_dot_marks_conditional_edges_dashed() -> None:
    dot = to_dot(resolve_graph(REFLEXION))
    assert '"__start__" -> "act";' in dot  # the only unconditional edge
    assert '"evaluate" -> "reflect" [style=dashed];' in dot and '"reflect" -> "act" [style=dashed];' in dot


def test_png_is_written_by_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "pics" / "reflexion.png"
    result = CliRunner().invoke(graphs_app, ["show", REFLEXION, "--png", str(out)])
    assert result.exit_code == 0, result.output
    assert "evaluate -.-> reflect;" in result.output
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 2000


def test_png_of_a_builtin_graph(tmp_path: Path) -> None:
    out = render_png(load_graph("coevol"), tmp_path / "coevol.png")
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_missing_dot_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SynthError, match=r"graphviz `dot` was not found on PATH.*apt-get install graphviz"):
        render_png(resolve_graph(REFLEXION), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
