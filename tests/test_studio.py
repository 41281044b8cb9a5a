"""langgraph.json: every entry imports (as `langgraph dev` loads it) to a compiled graph of a built-in."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from langgraph.graph.state import CompiledStateGraph

from synth.registry import BUILTIN

ROOT = Path(__file__).resolve().parent.parent


def _load(entry: str) -> object:
    """What the LangGraph CLI does with ``./path/file.py:attribute``: import the file, read the attribute."""
    file, _, attribute = entry.rpartition(":")
    spec = importlib.util.spec_from_file_location(f"studio_{attribute}", ROOT / file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attribute)


def test_langgraph_json_lists_every_builtin_graph() -> None:
    config = json.loads((ROOT / "langgraph.json").read_text())
    assert config["dependencies"] == ["."]
    assert sorted(config["graphs"]) == sorted(BUILTIN)


ENTRY_CHECK = """
import importlib.util, json, sys
from langgraph.graph.state import CompiledStateGraph
from synth.models.local.engine import _REGISTRY
for name, entry in json.load(open("langgraph.json"))["graphs"].items():
    file, _, attribute = entry.rpartition(":")
    spec = importlib.util.spec_from_file_location("studio_" + name, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    graph = getattr(module, attribute)
    assert isinstance(graph, CompiledStateGraph), (name, type(graph))
    print(name, len(graph.get_graph().nodes))
assert _REGISTRY and all(engine.model is None for engine in _REGISTRY.values()), "building loaded the model"
print("model not loaded")
"""


@pytest.mark.slow
def test_every_entry_imports_to_a_compiled_graph_without_loading_the_model() -> None:
    """In a fresh process (this one may hold a loaded model), with the default embedded model."""
    env = {k: v for k, v in os.environ.items() if k != "SYNTH_MODEL"}
    done = subprocess.run(
        [sys.executable, "-c", ENTRY_CHECK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(line.split()[0] for line in done.stdout.splitlines()[:-1]) == sorted(BUILTIN)
    assert done.stdout.splitlines()[-1] == "model not loaded"


def test_entries_follow_synth_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTH_MODEL", "openai:some-model@http://127.0.0.1:9/v1")
    graph = _load("./graphs/studio.py:coevol")
    assert isinstance(graph, CompiledStateGraph)
    with pytest.raises(AttributeError, match=r"graphs\.studio has no graph 'nope'; built-in graphs: "):
        _load("./graphs/studio.py:nope")
