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

from synth.store import RunStore

PLUGIN = """
from typing import Any
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, ConfigDict
from synth.graph import BaseState, ModelSet, SynthGraph, failed


class Seed(BaseModel):
    model_config = ConfigDict(extra="allow")
    word: str


class Loud(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shout: str


from synth.role import Role

SHOUTER = Role(name="shouter", instructions="You shout.", prompt="Shout {{ word }}.", output=Loud)


class State(BaseState, total=False):
    shout: str
    error: str
    stop_reason: str


def build(models: ModelSet) -> Any:
    async def shout(state: State) -> dict[str, Any]:
        step = await SHOUTER.run(models.for_role("shouter"), word=state["seed"]["word"])
        if not step.ok:
            return failed(step)
        return {"steps": [step.as_state()], "shout": step.output["shout"]}

    graph = StateGraph(State)
    graph.add_node("shout", shout)
    graph.add_edge(START, "shout")
    graph.add_edge("shout", END)
    return graph.compile()


GRAPH = SynthGraph(
    name="shout", description="A plugin graph that shouts.", version="1", seed_model=Seed,
    roles=(SHOUTER,), build=build, to_trajectory=lambda state: {"result": {"shout": state["shout"]}},
    exports={},
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
