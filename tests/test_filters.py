"""Filters on crafted records: each kind, first-failing reason wins, re-apply restores, nothing deleted."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.errors import SynthError
from synth.filters import FilterConfig, FilterSpec, apply_filters, check, load_config, token_f1
from synth.store import RunStore
from synth.trajectory import Trajectory


def record(i: int, answer: str, gold: list[str] | None = None, status: str = "ok") -> Trajectory:
    seed = {"question": f"q{i}", **({"answers": gold} if gold is not None else {})}
    return Trajectory(id=f"t{i}", graph="g", seed=seed, result={"answer": answer}, status=status)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "answer", "reason"),
    [
        (
            FilterSpec(kind="length", field="result.answer", min_chars=3),
            "ab",
            "length: result.answer has 2 chars < 3",
        ),
        (
            FilterSpec(kind="length", field="result.answer", max_chars=3),
            "abcd",
            "length: result.answer has 4 chars > 3",
        ),
        (FilterSpec(kind="length", field="result.answer", min_chars=1, max_chars=3), "abc", None),
        (
            FilterSpec(kind="regex", field="result.answer", pattern=r"\d"),
            "v2",
            "regex: result.answer matches '\\\\d'",
        ),
        (
            FilterSpec(kind="regex", field="result.answer", pattern=r"^Yes", must_match=True),
            "No",
            "regex: result.answer does not match '^Yes'",
        ),
        (
            FilterSpec(kind="refusal", field="result.answer"),
            "As an AI language model, no.",
            "refusal: result.answer contains 'as an ai language model'",
        ),
        (
            FilterSpec(kind="required", fields=["result.answer", "result.citations"]),
            "x",
            "required: missing result.citations",
        ),
    ],
)
def test_rule_filters(spec: FilterSpec, answer: str, reason: str | None) -> None:
    assert check(spec, record(0, answer), set()) == reason


def test_environment_filters_use_gold_answers() -> None:
    em = FilterSpec(kind="exact_match", field="result.answer")
    assert check(em, record(0, "The Eiffel Tower!", ["eiffel tower"]), set()) is None
    assert (
        check(em, record(0, "Big Ben", ["eiffel tower"]), set())
        == "exact_match: result.answer matches no gold answer"
    )
    assert check(em, record(0, "anything", None), set()) is None  # no gold: not judged
    f1 = FilterSpec(kind="f1", field="result.answer", threshold=0.6)
    assert check(f1, record(0, "paris france", ["paris"]), set()) is None
    assert check(f1, record(0, "london in england", ["paris"]), set()) == "f1: 0.00 < 0.6"
    assert token_f1("the cat sat", "cat sat down") == pytest.approx(0.8)


def test_apply_marks_filtered_with_reason_keeps_all_rows_and_reapplies(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.write(
        [
            record(0, "Paris", ["paris"]),
            record(1, "paris!", ["paris"]),
            record(2, "Rome", ["paris"]),
            record(3, "x", None, status="failed"),
        ]
    )
    store.close()
    config = FilterConfig(
        filters=[
            FilterSpec(kind="exact_match", field="result.answer"),
            FilterSpec(kind="dedup", field="result.answer"),
        ]
    )
    counts = apply_filters(tmp_path, config)
    assert counts == {"ok": 1, "filtered": 2, "filtered:exact_match": 1, "filtered:dedup": 1}
    store = RunStore(tmp_path)
    reasons = {t.id: (t.status, t.filter_reason) for t in store.iter_records()}
    assert reasons == {
        "t0": ("ok", None),
        "t1": ("filtered", "dedup: result.answer duplicates an earlier row"),
        "t2": ("filtered", "exact_match: result.answer matches no gold answer"),
        "t3": ("failed", None),
    }
    store.close()
    assert apply_filters(tmp_path, FilterConfig(filters=[])) == {"ok": 3}  # re-apply restores


def test_cli_filter_and_config_errors(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.write([record(0, "ok answer"), record(1, "")])
    store.close()
    config = tmp_path / "filters.yaml"
    config.write_text("filters:\n  - kind: length\n    field: result.answer\n    min_chars: 1\n")
    result = CliRunner().invoke(app, ["filter", str(tmp_path / "run"), "--config", str(config)])
    assert result.exit_code == 0 and "filtered:length: 1" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("filters:\n  - kind: lenght\n")
    with pytest.raises(SynthError, match=r"bad.yaml: invalid filter config: filters.0.kind"):
        load_config(bad)
