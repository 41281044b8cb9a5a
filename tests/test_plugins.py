"""A throwaway installed package registers a graph under the `synth.graphs` entry-point group.

The package is "installed" the way pip leaves it: a module plus a ``*.dist-info`` folder (METADATA and
entry_points.txt) on ``sys.path``, which ``importlib.metadata`` discovers. The CLI then lists the graph
and runs it by name against the loopback server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from synth.engine.store import RunStore

PLUGIN = """
from synth.graph import BaseState, SynthGraph, chain, result_from, role_node, seed_fields
from synth.role import Role, output_model

SHOUTER = Role(name="shouter", instructions="You shout.", prompt="Shout {{ word }}.",
               output=output_model("Loud", shout=str))


class State(BaseState, total=False):
    shout: str


GRAPH = SynthGraph(
    name="shout", description="A plugin graph that shouts.", seed_model=seed_fields("word"), roles=(SHOUTER,),
    build=lambda m: chain(State, {"shout": role_node(SHOUTER, m)}), to_trajectory=result_from("shout"),
)
"""


def _install(site: Path) -> None:
    (site / "synth_shout_plugin.py").write_text(textwrap.dedent(PLUGIN))
    dist = site / "synth_shout_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: synth-shout-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[synth.graphs]\nshout = synth_shout_plugin:GRAPH\n")


def test_an_installed_package_registers_a_graph_that_lists_and_runs(
    tmp_path: Path, openai_server: Any
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _install(site)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "COLUMNS": "250",
    }
    synth = [sys.executable, "-m", "synth"]
    listing = subprocess.run([*synth, "graphs", "list"], env=env, capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    assert "shout" in listing.stdout and "A plugin graph that shouts." in listing.stdout
    assert "coevol" in listing.stdout  # built-ins stay listed

    openai_server.script({"Shout tea.": {"content": {"shout": "TEA!"}}}, default={"content": {"shout": "?"}})
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"word": "tea"}) + "\n")
    run = subprocess.run(
        [
            *synth,
            "run",
            "shout",
            "-i",
            str(seeds),
            "-o",
            str(tmp_path / "run"),
            "-m",
            f"openai:scripted@{openai_server.base_url}",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    [record] = RunStore(tmp_path / "run").iter_records()
    assert record.status == "ok" and record.result == {"shout": "TEA!"}
    assert record.provenance is not None and record.provenance.graph == "shout"


def test_without_the_package_the_graph_is_unknown(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "synth", "run", "shout", "-i", "x.jsonl", "-o", str(tmp_path / "run")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "unknown graph 'shout'; available:" in result.stderr
