"""The short Python Reflexion (examples/reflexion_graph.py, written with synth.graph's helpers) behaves
exactly as the long hand-wired version it replaced: same steps, results, scores, statuses and exports.

``tests/snapshots/reflexion_py.json`` was recorded by this test from the hand-wired version (git history:
examples/reflexion_graph.py before the helpers); set ``SYNTH_SNAPSHOT_UPDATE=1`` to record it again. Three
rows cover the three exits of the loop: accepted after a lesson, out of rounds, and a failed call.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from synth.dataset.export import export_run
from synth.engine.session import RunRequest, resolve_graph, run_session
from synth.engine.store import RunStore

EXAMPLE = Path(__file__).parent.parent / "examples" / "reflexion_graph.py"
SNAPSHOT = Path(__file__).parent / "snapshots" / "reflexion_py.json"
SEEDS = [
    {"id": "planet", "instruction": "Name the largest planet."},
    {"id": "stubborn", "instruction": "Name the smallest planet."},
    {"id": "broken", "instruction": "Name the hottest planet."},
]
#: Fields of a step that vary between runs (timings) or name the server's port.
VOLATILE = {"latency_s", "model"}


def _script(server: Any) -> None:
    server.script(
        {
            "Your reply did not match": {"content": "still no verdict"},
            "Name the hottest planet.\nAnswer: Venus": {"content": "no verdict here"},
            "Write the lesson.": {"content": {"lesson": "Check the sizes."}},
            "Name the smallest planet.\nAnswer": {"content": {"verdict": "revise", "feedback": "No."}},
            "Answer: Jupiter": {"content": {"verdict": "accept", "feedback": "Right."}},
            "Answer: Saturn": {"content": {"verdict": "revise", "feedback": "Saturn is smaller."}},
            "Name the hottest planet.": {"content": {"answer": "Venus"}},
            "Lessons from earlier": {"content": {"answer": "Jupiter"}},
            "Write your answer.": {"content": {"answer": "Saturn"}},
        }
    )


def _step(step: dict[str, Any]) -> dict[str, Any]:
    usage = {k: v for k, v in step["usage"].items() if k != "latency_s"}
    return {**{k: v for k, v in step.items() if k not in VOLATILE}, "usage": usage}


def _observed(folder: Path, tmp_path: Path) -> dict[str, Any]:
    records = sorted(RunStore(folder).iter_records(), key=lambda r: r.seed["id"])
    rows = {
        r.seed["id"]: {
            "status": r.status,
            "error": r.error,
            "result": r.result,
            "scores": r.scores,
            "steps": [_step(s.model_dump(mode="json")) for s in r.steps],
        }
        for r in records
    }
    export_run(folder, resolve_graph(f"{EXAMPLE}:REFLEXION"), "sft", tmp_path / "sft")
    sft = pq.read_table(next((tmp_path / "sft").rglob("*.parquet"))).to_pylist()
    return {"rows": rows, "sft": sorted((r["messages"] for r in sft), key=json.dumps)}


async def test_python_reflexion_matches_the_hand_wired_version(tmp_path: Path, openai_server: Any) -> None:
    _script(openai_server)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    request = RunRequest(
        graph=f"{EXAMPLE}:REFLEXION",
        input=seeds,
        out=tmp_path / "run",
        models={"default": f"openai:scripted@{openai_server.base_url}"},
        concurrency=1,
    )
    summary, folder = await run_session(request)
    observed = _observed(folder, tmp_path)
    if os.environ.get("SYNTH_SNAPSHOT_UPDATE"):
        SNAPSHOT.write_text(json.dumps(observed, indent=1, sort_keys=True) + "\n")
    assert dict(summary.counts) == {"ok": 2, "failed": 1}
    assert observed == json.loads(SNAPSHOT.read_text())
