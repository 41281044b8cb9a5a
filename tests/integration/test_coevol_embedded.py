"""One CoEvol row on the real embedded model: schema-valid steps, the trajectory stored."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from roles.coevol import ROLES
from synth.engine.session import RunRequest, run_session
from synth.engine.store import RunStore

pytestmark = pytest.mark.slow


def test_one_coevol_row_on_the_embedded_model(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"instruction": "Name one primary colour.", "output": "Blue."}) + "\n")
    request = RunRequest(
        graph="coevol",
        input=seeds,
        out=tmp_path / "run",
        options={"max_rounds": 1},
        models={"default": "local:gemma-3-270m"},
        concurrency=1,
        timeout=600,
    )
    summary, folder = asyncio.run(run_session(request))
    assert summary.counts["ok"] == 1, summary
    store = RunStore(folder)
    (record,) = list(store.iter_records())
    store.close()
    schemas = {role.name: role.output for role in ROLES}
    roles_seen = [step.role for step in record.steps]
    assert roles_seen[:6] == [
        "positive_debater",
        "critical_debater",
        "positive_debater",
        "critical_debater",
        "advisor",
        "editor",
    ]
    assert roles_seen[6:] == ["judge", "judge"]
    for step in record.steps:
        assert step.ok, (step.role, step.error, step.raw)
        schemas[step.role].model_validate(step.output)  # type: ignore[union-attr]
    judge_modes = {step.meta.get("mode") for step in record.steps if step.role == "judge"}
    assert judge_modes == {"logprob"}  # auto mode scores verdicts by log-probability on the embedded model
    assert record.result["rounds"][0]["scores"]["judge_error"] is False
    assert record.usage.completion_tokens > 0
