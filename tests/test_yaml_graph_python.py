"""The README's Python counterpart of the YAML example (examples/reflexion_graph.py) runs as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from test_yaml_graph import _reflexion_script

from synth.engine.store import RunStore

EXAMPLE = Path(__file__).parent.parent / "examples" / "reflexion_graph.py"
SEEDS = Path(__file__).parent.parent / "examples" / "reflexion_seeds.jsonl"


def test_python_reflexion_example_runs_and_exports(tmp_path: Path, openai_server: Any) -> None:
    _reflexion_script(openai_server)
    synth = [sys.executable, "-m", "synth"]
    model = f"openai:scripted@{openai_server.base_url}"
    run = subprocess.run(
        [*synth, "run", f"{EXAMPLE}:REFLEXION", "-i", str(SEEDS), "-o", str(tmp_path / "run"), "-m", model],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    records = list(RunStore(tmp_path / "run").iter_records())
    assert [r.status for r in records] == ["ok", "ok"]
    for record in records:
        assert record.result["answers"] == ["Saturn", "Jupiter"]
        assert record.result["lessons"] == ["Check the sizes."]
        assert [s.role for s in record.steps] == ["actor", "evaluator", "reflector", "actor", "evaluator"]
    export = subprocess.run(
        [*synth, "export", str(tmp_path / "run"), "-f", "sft", "-o", str(tmp_path / "sft")],
        capture_output=True,
        text=True,
    )
    assert export.returncode == 0, export.stderr
    rows = pq.read_table(next((tmp_path / "sft").rglob("*.parquet"))).to_pylist()
    assert [r["messages"][1]["content"] for r in rows] == ["Jupiter", "Jupiter"]
