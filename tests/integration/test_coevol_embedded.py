"""One CoEvol row on the real embedded model: schema-valid steps, the trajectory stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from roles.coevol import ROLES
from tests.integration.embedded_run import run_one_row

pytestmark = pytest.mark.slow


def test_one_coevol_row_on_the_embedded_model(tmp_path: Path) -> None:
    row = {"instruction": "Name one primary colour.", "output": "Blue."}
    summary, record = run_one_row(tmp_path, "coevol", row, {"max_rounds": 1})
    assert summary.counts["ok"] == 1, summary
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
