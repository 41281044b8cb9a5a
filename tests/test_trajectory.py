"""Trajectory ids: stable, own ids win, identical rows are never merged."""

from __future__ import annotations

from synth.trajectory import Step, Usage, row_key, trajectory_id


def test_ids_are_stable_and_duplicates_stay_distinct() -> None:
    row = {"instruction": "same"}
    first = trajectory_id(row_key(row), 0, "fp")
    assert first == trajectory_id(row_key(dict(row)), 0, "fp")
    assert first != trajectory_id(row_key(row), 1, "fp")
    assert first != trajectory_id(row_key(row), 0, "other-fingerprint")


def test_own_id_field_wins_over_content() -> None:
    assert row_key({"id": "a", "x": 1}) == row_key({"id": "a", "x": 2}) == "id:a"
    assert row_key({"x": 1}) != row_key({"x": 2})


def test_usage_adds_up_and_steps_are_json_native() -> None:
    total = Usage(prompt_tokens=3, completion_tokens=2, calls=1) + Usage(prompt_tokens=1, calls=1)
    assert (total.prompt_tokens, total.completion_tokens, total.calls, total.total_tokens) == (4, 2, 2, 6)
    state = Step(role="r", output={"a": [1, 2]}, usage=total).as_state()
    assert state["usage"]["calls"] == 2 and state["output"] == {"a": [1, 2]}
