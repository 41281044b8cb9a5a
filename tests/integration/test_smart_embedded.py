"""SMART on the embedded model (``local:gemma-3-270m``) end to end: one NQ row, every step schema-valid.

The base 270M model answers poorly; this checks the plumbing (constrained JSON for each role, the
retrieval fan-out, the branch, the exports), not the quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphs.smart import GRAPH
from roles.smart import ROLES
from tests.integration.embedded_run import run_one_row
from tests.paths import DATA


@pytest.mark.slow
def test_one_row_on_the_embedded_model(tmp_path: Path) -> None:
    row = json.loads((DATA / "qa_passages.jsonl").open(encoding="utf-8").readline())
    seed = {"id": row["id"], "question": row["question"], "answers": row["answers"]}
    options = {"corpus": str(DATA / "corpus.jsonl"), "top_k": 2, "max_queries": 1}
    summary, record = run_one_row(tmp_path, "smart", seed, options, max_calls=8, retries=0)
    assert record.status == "ok", record.error

    outputs = {role.name: role.output for role in ROLES}
    roles = [s.role for s in record.steps]
    assert roles[:2] == ["intent_reconstructor", "knowledge_retriever"] and roles[-1] == "response_generator"
    assert 1 <= roles.count("fact_locator") <= 2
    for step in record.steps:
        if step.role in outputs and step.ok:
            outputs[step.role].model_validate(step.output)  # type: ignore[union-attr]
    assert all(s.ok for s in record.steps if s.role != "fact_locator"), [s.error for s in record.steps]
    assert record.result["answer"] == row["answers"][0] or record.result["exact_match"]
    assert record.usage.calls >= 3 and summary.counts["ok"] == 1

    messages = next(iter(GRAPH.exports["sft-long"].rows(record)))["messages"]
    assert messages[0]["content"] == row["question"] and messages[-1]["name"] == "Response Generator"
