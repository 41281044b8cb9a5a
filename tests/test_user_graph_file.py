"""A user-defined graph in its own .py file: `synth run FILE.py:NAME`, then `synth export` of that run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from datasets import load_dataset

USER_GRAPH = """
from typing import Any
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, ConfigDict
from synth.dataset.export import sft_features
from synth.graph import BaseState, ExportFormat, ModelSet, SynthGraph, failed
from synth.role import Role


class Seed(BaseModel):
    model_config = ConfigDict(extra="allow")
    topic: str


class Slogan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slogan: str


WRITER = Role(name="writer", instructions="You write slogans.", prompt="A slogan about {{ topic }}.",
              output=Slogan)


class State(BaseState, total=False):
    slogan: str


def build(models: ModelSet) -> Any:
    async def write(state: State) -> dict[str, Any]:
        step = await WRITER.run(models.for_role("writer"), topic=state["seed"]["topic"])
        if not step.ok:
            return failed(step)
        return {"steps": [step.as_state()], "slogan": step.output["slogan"]}

    graph = StateGraph(State)
    graph.add_node("write", write)
    graph.add_edge(START, "write")
    graph.add_edge("write", END)
    return graph.compile()


def sft_rows(trajectory):
    yield {"id": trajectory.id, "messages": [
        {"role": "user", "content": f"A slogan about {trajectory.seed['topic']}."},
        {"role": "assistant", "content": trajectory.result["slogan"]}]}


SLOGANS = SynthGraph(
    name="slogans", description="One writer role.", version="1", seed_model=Seed, roles=(WRITER,),
    build=build, to_trajectory=lambda state: {"result": {"slogan": state["slogan"]}},
    exports={"sft": ExportFormat("sft", "topic -> slogan", sft_rows, sft_features)},
)
"""


def test_graph_file_runs_and_exports_through_the_cli(tmp_path: Path, openai_server: Any) -> None:
    graph_file = tmp_path / "my_graph.py"
    graph_file.write_text(textwrap.dedent(USER_GRAPH))
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"topic": t}) + "\n" for t in ["tea", "rain", "maps"]))
    openai_server.script(
        {"tea": {"content": {"slogan": "Steep happens."}}}, default={"content": {"slogan": "Always onward."}}
    )
    synth = [sys.executable, "-m", "synth"]
    run = subprocess.run(
        [
            *synth,
            "run",
            f"{graph_file}:SLOGANS",
            "-i",
            str(seeds),
            "-o",
            str(tmp_path / "run"),
            "-m",
            f"openai:scripted@{openai_server.base_url}",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    export = subprocess.run(
        [*synth, "export", str(tmp_path / "run"), "-f", "sft", "-o", str(tmp_path / "sft")],
        capture_output=True,
        text=True,
    )
    assert export.returncode == 0, export.stderr
    rows = load_dataset(str(tmp_path / "sft"), split="train")
    slogans = sorted(row["messages"][1]["content"] for row in rows)
    assert slogans == ["Always onward.", "Always onward.", "Steep happens."]


def test_missing_graph_file_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "synth",
            "run",
            f"{tmp_path}/nope.py:G",
            "-i",
            "x.jsonl",
            "-o",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "does not exist" in result.stderr
