"""Registry listing and Mermaid pictures of the built-in graphs (snapshot-tested)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synth.cli.graphs import graphs_app, mermaid, roles_app
from synth.registry import available, load_graph

SNAPSHOTS = Path(__file__).parent / "snapshots"


@pytest.mark.parametrize("name", ["atm", "coevol", "smart"])
def test_mermaid_of_builtin_graphs_matches_snapshot(name: str) -> None:
    text = mermaid(load_graph(name))
    snapshot = SNAPSHOTS / f"{name}.mmd"
    if os.environ.get("SYNTH_UPDATE_SNAPSHOTS"):
        snapshot.write_text(text)
    assert text == snapshot.read_text(), f"graph {name} changed shape; rerun with SYNTH_UPDATE_SNAPSHOTS=1"
    assert "__start__" in text and "__end__" in text


def test_graphs_and_roles_are_listed() -> None:
    runner = CliRunner()
    listing = runner.invoke(graphs_app, ["list"], env={"COLUMNS": "300"})
    assert listing.exit_code == 0
    for name in available():
        assert name in listing.output
    assert "sft-long" in listing.output and "dpo" in listing.output
    atm_row = next(line for line in listing.output.splitlines() if line.startswith("│ atm"))
    assert "atm-dpo" in atm_row and "corrections" in atm_row  # graph's own + the standard formats
    roles = runner.invoke(roles_app, ["list"], env={"COLUMNS": "300"})
    assert roles.exit_code == 0 and "fact_locator" in roles.output and "verdict" in roles.output
