"""YAML graph specs run end to end against the loopback server: loop, fan-out, exports, resume."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich.console import Console

from synth.dataset.export import export_run
from synth.engine.session import RunRequest, resolve_graph, run_session
from synth.engine.store import RunStore

EXAMPLES = Path(__file__).parent.parent / "examples"
REFLEXION = EXAMPLES / "reflexion.yaml"


def _reflexion_script(server: Any) -> None:
    """Saturn first (the evaluator revises), Jupiter after a lesson (accepted)."""
    server.script(
        {
            "Write the lesson.": {"content": {"lesson": "Check the sizes."}},
            "Answer: Jupiter": {"content": {"verdict": "accept", "feedback": "Right."}},
            "Answer: Saturn": {"content": {"verdict": "revise", "feedback": "Saturn is smaller."}},
            "Lessons from earlier": {"content": {"answer": "Jupiter"}},
            "Write your answer.": {"content": {"answer": "Saturn"}},
        }
    )


def _request(
    tmp_path: Path, graph: str, seeds: list[dict[str, Any]], server: Any, **extra: Any
) -> RunRequest:
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in seeds))
    return RunRequest(
        graph=graph,
        input=path,
        out=tmp_path / "run",
        models={"default": f"openai:scripted@{server.base_url}"},
        concurrency=4,
        **extra,
    )


async def test_reflexion_yaml_loops_until_accepted_and_exports(tmp_path: Path, openai_server: Any) -> None:
    _reflexion_script(openai_server)
    request = _request(tmp_path, str(REFLEXION), [{"instruction": "Name the largest planet."}], openai_server)
    summary, folder = await run_session(request)
    assert dict(summary.counts) == {"ok": 1}
    [record] = RunStore(folder).iter_records()
    result = record.result
    assert result["visits"] == {"act": 2, "evaluate": 2, "reflect": 1}
    assert result["outputs"]["act"] == {"answer": "Jupiter"}
    assert [s.node for s in record.steps] == ["act", "evaluate", "reflect", "act", "evaluate"]
    second_prompt = record.steps[3].messages[1]["content"]
    assert "Your previous answer: Saturn" in second_prompt and "- Check the sizes." in second_prompt
    graph = resolve_graph(str(REFLEXION))
    export_run(folder, graph, "sft", tmp_path / "sft")
    export_run(folder, graph, "dpo", tmp_path / "dpo")
    sft = pq.read_table(next((tmp_path / "sft").rglob("*.parquet"))).to_pylist()
    assert sft[0]["messages"][1] == {"role": "assistant", "content": "Jupiter"}
    dpo = pq.read_table(next((tmp_path / "dpo").rglob("*.parquet"))).to_pylist()
    assert dpo[0]["chosen"][0]["content"] == "Jupiter" and dpo[0]["rejected"][0]["content"] == "Saturn"


async def test_max_rounds_stops_the_loop_and_is_an_option(tmp_path: Path, openai_server: Any) -> None:
    openai_server.script(
        {
            "Write the lesson.": {"content": {"lesson": "Try harder."}},
            "Reply with verdict": {"content": {"verdict": "revise", "feedback": "No."}},
        },
        default={"content": {"answer": "Saturn"}},
    )
    request = _request(
        tmp_path,
        str(REFLEXION),
        [{"instruction": "Name the largest planet."}],
        openai_server,
        options={"evaluate.max_rounds": 2},
    )
    await run_session(request)
    [record] = RunStore(request.out).iter_records()
    assert record.status == "ok"
    assert record.result["visits"] == {"act": 2, "evaluate": 2, "reflect": 1}
    assert record.result["stop_reason"] == "max_rounds (2) reached at node evaluate"


FANOUT = """
name: topics
seed:
  subject: {type: string}
roles:
  planner:
    instructions: You split a subject into topics.
    prompt: "Plan topics for {{ subject }}."
    output:
      properties:
        topics: {type: array, items: {type: string}}
      required: [topics]
  writer:
    instructions: You write one line.
    prompt: "Write about topic {{ item }} (number {{ index }})."
    output:
      properties: {line: {type: string}}
      required: [line]
  editor:
    instructions: You join lines.
    prompt: "Join: {% for w in write %}{{ w.line }}|{% endfor %}"
nodes:
  plan: planner
  write: {role: writer, for_each: plan.topics}
  join: editor
edges:
  - {from: START, to: plan}
  - {from: plan, to: write}
  - {from: write, to: join}
  - {from: join, to: END}
"""


async def test_fan_out_over_a_list_field_joins_in_order(tmp_path: Path, openai_server: Any) -> None:
    spec = tmp_path / "topics.yaml"
    spec.write_text(FANOUT)

    def responder(request: dict[str, Any]) -> Any:
        text = request["messages"][-1]["content"]
        if text.startswith("Plan"):
            return {"content": {"topics": ["a", "b", "c"]}}
        if text.startswith("Write"):
            return {"content": {"line": text.split("topic ")[1][0].upper()}}
        return f"joined {text}"

    openai_server.script(responder)
    request = _request(tmp_path, str(spec), [{"subject": "letters"}], openai_server)
    summary, folder = await run_session(request)
    assert dict(summary.counts) == {"ok": 1}
    [record] = RunStore(folder).iter_records()
    assert [o["line"] for o in record.result["outputs"]["write"]] == ["A", "B", "C"]
    assert record.result["outputs"]["join"] == {"text": "joined Join: A|B|C|"}
    # default sft export: one row per role call (1 plan + 3 writes + 1 join)
    export_run(folder, resolve_graph(str(spec)), "sft", tmp_path / "sft")
    rows = pq.read_table(next((tmp_path / "sft").rglob("*.parquet"))).to_pylist()
    assert len(rows) == 5 and rows[0]["messages"][0]["role"] == "system"


def record_prefix(folder: Path) -> str:
    [record] = RunStore(folder).iter_records()
    return record.id[:8] + " "


async def test_trace_prints_each_node_event_and_keeps_results(tmp_path: Path, openai_server: Any) -> None:
    _reflexion_script(openai_server)
    request = _request(
        tmp_path, str(REFLEXION), [{"instruction": "Name the largest planet."}], openai_server, trace=True
    )
    out = io.StringIO()
    _, folder = await run_session(request, Console(file=out, width=200, color_system=None))
    lines = [line for line in out.getvalue().splitlines() if line.startswith(record_prefix(folder))]
    nodes = [line.split()[1] for line in lines]
    assert nodes == ["act", "evaluate", "reflect", "act", "evaluate"], out.getvalue()
    assert 'evaluator {"verdict": "revise", "feedback": "Saturn is smaller."}' in lines[1]
    assert "wrote history, next, outputs, visits" in lines[0]
    [record] = RunStore(folder).iter_records()
    assert record.result["outputs"]["act"] == {"answer": "Jupiter"}  # same result as without --trace
    assert "trace:" not in (folder / "config.yaml").read_text()


def test_a_node_whose_every_way_on_ends_the_row_gets_a_plain_edge() -> None:
    """No router runs after the last node (a branch evaluation per row, ~13 % of LangGraph's cost on the
    one-role bench graph); nodes with a choice keep theirs, and a failed node still ends the row."""
    from synth.graph import ModelSet

    one_role = resolve_graph(str(Path(__file__).parent.parent / "bench" / "one_role.yaml"))
    edges = one_role.build(ModelSet(default=None, specs={})).get_graph().edges
    assert [(e.source, e.target, e.conditional) for e in edges] == [
        ("__start__", "write", False),
        ("write", "__end__", False),
    ]
    graph = resolve_graph(str(REFLEXION))
    reflexion = graph.build(ModelSet(default=None, specs={}), **graph.resolve_options({})).get_graph().edges
    assert {e.source for e in reflexion if e.conditional} >= {"act", "evaluate"}
