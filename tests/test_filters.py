"""Model-free filters on crafted records: each kind, language, exact and near dedup, config and flags."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from typer.testing import CliRunner

from synth.cli import app
from synth.engine.store import RunStore
from synth.filters import FilterConfig, FilterConfigError, apply_filters, build_config, load_config, token_f1
from synth.filters.apply import _rule
from synth.filters.config import FilterSpec
from synth.trajectory import Trajectory
from tests.paths import DATA


def record(i: int, answer: str, gold: list[str] | None = None, status: str = "ok") -> Trajectory:
    seed = {"question": f"q{i}", **({"answers": gold} if gold is not None else {})}
    return Trajectory(id=f"t{i}", graph="g", seed=seed, result={"answer": answer}, status=status)  # type: ignore[arg-type]


def reason(spec: dict[str, Any], *records: Trajectory) -> list[str | None]:
    """Run one filter (built from a YAML-like dict) over records in order."""
    parsed = TypeAdapter(FilterSpec).validate_python(spec)
    return asyncio.run(_rule(parsed)(list(records)))


@pytest.mark.parametrize(
    ("spec", "answer", "why"),
    [
        ({"kind": "length", "min_chars": 3}, "ab", "length: result.answer has 2 chars < 3"),
        ({"kind": "length", "max_chars": 3}, "abcd", "length: result.answer has 4 chars > 3"),
        ({"kind": "length", "min_chars": 1, "max_chars": 3}, "abc", None),
        ({"kind": "regex", "pattern": r"\d"}, "v2", "regex: result.answer matches '\\\\d'"),
        (
            {"kind": "regex", "pattern": r"^Yes", "must_match": True},
            "No",
            "regex: result.answer does not match '^Yes'",
        ),
        (
            {"kind": "refusal"},
            "As an AI language model, no.",
            "refusal: result.answer contains 'as an ai language model'",
        ),
        ({"kind": "refusal", "phrases": ["nope"]}, "As an AI language model, no.", None),
    ],
)
def test_rule_filters(spec: dict[str, Any], answer: str, why: str | None) -> None:
    assert reason({"field": "result.answer", **spec}, record(0, answer)) == [why]


def test_required_names_the_missing_fields() -> None:
    spec = {"kind": "required", "fields": ["result.answer", "result.citations", "seed.question"]}
    assert reason(spec, record(0, "x")) == ["required: missing result.citations"]


def test_environment_filters_use_gold_answers() -> None:
    em = {"kind": "exact_match", "field": "result.answer"}
    gold = ["eiffel tower"]
    assert reason(em, record(0, "The Eiffel Tower!", gold), record(1, "Big Ben", gold)) == [
        None,
        "exact_match: result.answer matches no gold answer",
    ]
    assert reason(em, record(0, "anything", None)) == [None]  # no gold: not judged
    f1 = {"kind": "f1", "field": "result.answer", "threshold": 0.6}
    assert reason(f1, record(0, "paris france", ["paris"]), record(1, "london in england", ["paris"])) == [
        None,
        "f1: 0.00 < 0.6",
    ]
    assert token_f1("the cat sat", "cat sat down") == pytest.approx(0.8)


def test_language_filter_keeps_the_listed_languages_and_skips_short_text() -> None:
    spec = {"kind": "language", "field": "result.answer", "languages": ["en"]}
    english = record(0, "The quick brown fox jumps over the lazy dog near the river bank.")
    french = record(1, "Le renard brun saute par-dessus le chien paresseux près de la rivière.")
    german = record(2, "Der schnelle braune Fuchs springt über den faulen Hund am Flussufer.")
    short = record(3, "Oui, merci.")
    reasons = reason(spec, english, french, german, short)
    assert reasons[0] is None and reasons[3] is None
    assert reasons[1] is not None and reasons[1].startswith("language: result.answer is 'fr' (p=")
    assert reasons[2] is not None and "'de'" in reasons[2] and reasons[2].endswith("not en")
    assert reason({**spec, "languages": ["en", "fr", "de"]}, french, german) == [None, None]


def test_language_filter_on_the_bundled_alpaca_outputs() -> None:
    """Real data: the Alpaca outputs are English, so an `en` filter keeps (nearly) all of them."""
    rows = [json.loads(line) for line in (DATA / "instructions.jsonl").read_text().splitlines()[:200]]
    records = [record(i, row["output"]) for i, row in enumerate(rows)]
    reasons = reason({"kind": "language", "field": "result.answer", "languages": ["en"]}, *records)
    filtered = [r for r in reasons if r]
    assert len(filtered) <= 6, filtered  # a few code or number-only outputs may read as another language


def test_exact_dedup_names_the_first_row() -> None:
    spec = {"kind": "dedup", "field": "result.answer"}
    assert reason(spec, record(0, "Paris."), record(1, "paris"), record(2, "Rome")) == [
        None,
        "dedup: result.answer duplicates row t0",
        None,
    ]


def test_near_dup_finds_edited_copies_and_names_the_most_similar_earlier_row() -> None:
    rows = [json.loads(line) for line in (DATA / "instructions.jsonl").read_text().splitlines()[:40]]
    texts = [row["output"] for row in rows if len(row["output"]) > 200][:10]
    base = texts[0]
    edited = base.replace(".", "!", 1) + " Indeed."  # a light edit: near, not exact
    records = [record(i, text) for i, text in enumerate(texts)] + [record(99, edited)]
    spec = {"kind": "near_dup", "field": "result.answer", "threshold": 0.7}
    reasons = reason(spec, *records)
    assert reasons[:-1] == [None] * len(texts)  # distinct Alpaca outputs are not near duplicates
    assert reasons[-1] is not None and reasons[-1].startswith("near_dup: result.answer ~ row t0 (jaccard 0.")
    exact = {"kind": "dedup", "field": "result.answer"}
    assert reason(exact, record(0, base), record(1, edited)) == [None, None]  # exact dedup misses it


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
    config = build_config(None, ["exact_match field=result.answer", "dedup field=result.answer"])
    report = asyncio.run(apply_filters(tmp_path, config))
    assert report.counts == {"ok": 1, "filtered": 2, "filtered:exact_match": 1, "filtered:dedup": 1}
    store = RunStore(tmp_path)
    reasons = {t.id: (t.status, t.filter_reason) for t in store.iter_records()}
    assert reasons == {
        "t0": ("ok", None),
        "t1": ("filtered", "dedup: result.answer duplicates row t0"),
        "t2": ("filtered", "exact_match: result.answer matches no gold answer"),
        "t3": ("failed", None),
    }
    store.close()
    summary = json.loads((tmp_path / "filters.json").read_text())
    assert summary["filters"][1] == {"kind": "dedup", "field": "result.answer"}
    restored = asyncio.run(apply_filters(tmp_path, FilterConfig(filters=[])))
    assert restored.counts == {"ok": 3, "filtered": 0}  # re-apply restores; failed rows are untouched


def test_config_errors_name_file_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "filters:\n  - {kind: length, field: result.x, min_chars: 1}\n  - kind: near_dup\n    field: a\n"
        "    treshold: 0.9\n"
    )
    with pytest.raises(FilterConfigError, match=r"bad.yaml:3: filters.1.near_dup.treshold: Extra inputs"):
        load_config(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("filters:\n  - kind: lenght\n")
    with pytest.raises(FilterConfigError, match=r"unknown.yaml:2: filters.0.*kinds: length, regex"):
        load_config(unknown)
    with pytest.raises(FilterConfigError, match="pattern '\\(' is not a valid regular expression"):
        build_config(None, ["regex field=a pattern=("])
    with pytest.raises(FilterConfigError, match="start with a kind"):
        build_config(None, ["field=a"])


def test_flags_parse_lists_numbers_and_quoted_values() -> None:
    config = build_config(
        None,
        [
            "language field=result.answer languages=en,fr min_confidence=0.7",
            "regex field=result.answer pattern='(?i)lorem [a-z]+ ipsum' must_match=true",
        ],
    )
    language, regex = config.filters
    assert language.kind == "language" and language.languages == ["en", "fr"]
    assert language.min_confidence == 0.7
    assert regex.kind == "regex" and regex.pattern == "(?i)lorem [a-z]+ ipsum" and regex.must_match


def test_cli_filter_with_config_and_flags(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.write([record(0, "ok answer"), record(1, ""), record(2, "ok answer")])
    store.close()
    config = tmp_path / "filters.yaml"
    config.write_text("filters:\n  - kind: length\n    field: result.answer\n    min_chars: 1\n")
    args = ["filter", str(tmp_path / "run"), "--config", str(config), "--filter", "dedup field=result.answer"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "filtered:dedup: 1" in result.output and "filtered:length: 1" in result.output
    nothing = CliRunner().invoke(app, ["filter", str(tmp_path / "run")])
    assert nothing.exit_code != 0 and "--config" in nothing.output
