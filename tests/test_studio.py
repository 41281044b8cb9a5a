"""langgraph.json: each entry is what `langgraph dev` loads, a graph factory read from the module namespace.

tests/studio/ runs the real LangGraph CLI on it (in `.venv-studio`); these tests check the factories here.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langgraph.graph.state import CompiledStateGraph

from synth.registry import builtin
from synth.studio import GraphUnavailable

ROOT = Path(__file__).resolve().parent.parent
SPEC = "openai:some-model@http://127.0.0.1:9/v1"


def _load(entry: str) -> Any:
    """What the LangGraph CLI does with ``./path/file.py:attribute``: exec the file, read the namespace.

    ``module.__dict__[attribute]``, not ``getattr``: a module-level ``__getattr__`` is never consulted.
    """
    file, _, attribute = entry.rpartition(":")
    spec = importlib.util.spec_from_file_location(f"studio_{attribute}", ROOT / file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.__dict__[attribute]


def _graph(name: str, **configurable: Any) -> Any:
    factory = _load(f"./graphs/studio.py:{name}")
    return asyncio.run(factory({"configurable": {"thread_id": "t", **configurable}}))


def test_langgraph_json_lists_every_builtin_graph_as_a_namespace_attribute() -> None:
    config = json.loads((ROOT / "langgraph.json").read_text())
    assert config["dependencies"] == ["."]
    assert sorted(config["graphs"]) == sorted(builtin())
    for entry in config["graphs"].values():
        assert callable(_load(entry))


def test_options_come_from_the_config_with_real_schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTH_MODEL", SPEC)
    graph = _graph("coevol", max_rounds=1)
    assert isinstance(graph, CompiledStateGraph)
    assert {"seed", "steps", "response", "rounds"} <= set(graph.get_input_jsonschema()["properties"])
    assert "response" in graph.get_output_jsonschema()["properties"]
    options = graph.get_context_jsonschema()["properties"]
    assert options["max_rounds"]["default"] == 3 and options["judge_mode"]["type"] == "string"
    assert "model" in options
    assert _graph("coevol", max_rounds=1) is graph, "one build per distinct options"
    assert _graph("coevol", max_rounds=2) is not graph
    atm = _graph("atm", model="local:gemma-3-270m")
    assert atm.get_context_jsonschema()["properties"]["inject"]["anyOf"][0]["type"] == "integer"


def test_a_graph_that_cannot_be_built_fails_its_runs_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTH_MODEL", SPEC)
    atm = _graph("atm")  # the OpenAI spec has no log-probabilities
    assert list(atm.get_graph().nodes) == ["__start__", "cannot_build", "__end__"]
    with pytest.raises(GraphUnavailable, match=r"graph 'atm' cannot be built with model 'openai:some-model@"):
        asyncio.run(atm.ainvoke({"seed": {}, "steps": []}))
    bad = _graph("coevol", max_rounds="many")
    with pytest.raises(GraphUnavailable, match=r"option max_rounds: Input should be a valid integer"):
        asyncio.run(bad.ainvoke({"seed": {}, "steps": []}))
    zero = _graph("coevol", max_rounds=0)
    with pytest.raises(GraphUnavailable, match=r"max_rounds must be >= 1"):
        asyncio.run(zero.ainvoke({"seed": {}, "steps": []}))


ENTRY_CHECK = """
import asyncio, importlib.util, json, sys
from langgraph.graph.state import CompiledStateGraph
from synth.models.local.engine import _REGISTRY
for name, entry in json.load(open("langgraph.json"))["graphs"].items():
    file, _, attribute = entry.rpartition(":")
    spec = importlib.util.spec_from_file_location("studio_" + name, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    graph = asyncio.run(module.__dict__[attribute]({"configurable": {}}))
    assert isinstance(graph, CompiledStateGraph), (name, type(graph))
    assert "cannot_build" not in graph.get_graph().nodes, name
    print(name, len(graph.get_graph().nodes))
assert _REGISTRY and all(engine.model is None for engine in _REGISTRY.values()), "building loaded the model"
print("model not loaded")
"""


@pytest.mark.slow
def test_every_entry_builds_with_the_embedded_model_without_loading_it() -> None:
    """In a fresh process (this one may hold a loaded model), with the default embedded model."""
    env = {k: v for k, v in os.environ.items() if k != "SYNTH_MODEL"}
    done = subprocess.run(
        [sys.executable, "-c", ENTRY_CHECK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(line.split()[0] for line in done.stdout.splitlines()[:-1]) == sorted(builtin())
    assert done.stdout.splitlines()[-1] == "model not loaded"
