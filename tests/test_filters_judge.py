"""The LLM-judge filter over real HTTP (loopback OpenAI server): rubric, threshold, concurrency, cache."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from synth.cli import app
from synth.engine.store import RunStore
from synth.filters import FilterConfig, FilterOptions, apply_filters, build_config
from synth.role import TemplateError
from synth.testing.openai_server import OpenAIServer
from synth.trajectory import Trajectory

ANSWERS = {
    0: "GOOD: Paris is the capital of France.",
    1: "BAD: The capital of France is Lyon.",
    2: "GOOD: Water boils at 100 C at sea level.",
    3: "JUNK",
    4: "BAD: no idea",
    5: "GOOD: Seven days make a week.",
    6: "",
}


def judge_responder(request: dict[str, Any]) -> Any:
    """Scores by the marker in the judged text; JUNK never yields valid JSON (repair turn included)."""
    everything = " ".join(str(m.get("content", "")) for m in request["messages"])
    if "JUNK" in everything:
        return "I would rather not say."
    score = 9 if "GOOD:" in everything else 2
    return {"content": {"reason": f"scripted {score}", "score": score}}


def make_run(folder: Path, server: OpenAIServer, concurrency: int = 4) -> Path:
    store = RunStore(folder)
    store.write(
        [
            Trajectory(id=f"t{i}", graph="g", seed={"question": f"q{i}"}, result={"q": f"Q{i}?", "answer": a})
            for i, a in ANSWERS.items()
        ]
    )
    store.write_config(
        {
            "graph": "g",
            "input": "seeds.jsonl",
            "out": str(folder),
            "models": {"default": f"openai:mock-model@{server.base_url}"},
            "concurrency": concurrency,
            "max_calls": 2 * concurrency,
            "retries": 1,
            "backoff": 0.01,
        },
        "f",
    )
    store.close()
    return folder


def judge(**extra: Any) -> dict[str, Any]:
    return {"kind": "judge", "field": "result.answer", "prompt_field": "result.q", "threshold": 5, **extra}


def statuses(folder: Path) -> dict[str, tuple[str, str | None, Any]]:
    store = RunStore(folder)
    try:
        return {
            t.id: (t.status, t.filter_reason, t.scores.get("filters", {}).get("judge"))
            for t in store.iter_records()
        }
    finally:
        store.close()


def test_judge_filters_below_threshold_concurrently_and_never_pays_twice(
    tmp_path: Path, openai_server: OpenAIServer
) -> None:
    openai_server.script(judge_responder)
    openai_server.set_latency(0.05)
    folder = make_run(tmp_path / "run", openai_server)
    config = FilterConfig.model_validate({"filters": [judge()]})
    report = asyncio.run(apply_filters(folder, config))
    got = statuses(folder)
    assert {k: v[0] for k, v in got.items()} == {
        "t0": "ok", "t1": "filtered", "t2": "ok", "t3": "filtered", "t4": "filtered", "t5": "ok",
        "t6": "filtered",
    }  # fmt: skip
    assert got["t0"][2] == 9.0 and got["t1"][2] == 2.0  # the score is kept in scores.filters
    assert got["t1"][1] == "judge: score 2 < 5 (scripted 2)"
    assert got["t3"][1] is not None and got["t3"][1].startswith("judge: no valid score (validation)")
    assert got["t6"][1] == "judge: result.answer is empty"  # no call for empty text
    stats = openai_server.stats()
    # 5 rows judged + 1 repair turn for JUNK; several in flight at once (concurrency 4).
    assert stats["completions"] == 7 and stats["max_in_flight"] >= 3
    assert report.counts["filtered:judge"] == 4 and report.usage.calls == 7 and report.usage.cached_calls == 0
    first = openai_server.requests[0]
    user = next(m["content"] for m in first["messages"] if m["role"] == "user")
    assert user.startswith("Request:\nQ") and "Score the response from 1.0 to 10.0" in user
    assert first["temperature"] == 0.0

    again = asyncio.run(apply_filters(folder, config))  # re-apply: every good call comes from the cache
    assert statuses(folder) == got
    # JUNK's two replies failed validation: never cached, so they are asked again (issue 18, defect 5).
    assert openai_server.stats()["completions"] == 9
    assert again.usage.calls == 7 and again.usage.cached_calls == 5


def test_cheaper_filters_run_first_and_a_custom_rubric_sees_the_record(
    tmp_path: Path, openai_server: OpenAIServer
) -> None:
    openai_server.script(judge_responder)
    folder = make_run(tmp_path / "run", openai_server)
    config = build_config(None, ["length field=result.answer min_chars=13"])
    rubric = "Question {{ seed.question }} (row {{ id }}): {{ text }}. Score {{ low }}-{{ high }}."
    spec = judge(rubric=rubric, scale=[0, 10], threshold=3, name="quality")
    config = FilterConfig.model_validate({"filters": [config.filters[0].model_dump(), spec]})
    asyncio.run(apply_filters(folder, config, FilterOptions(concurrency=1)))
    asked = [next(m["content"] for m in r["messages"] if m["role"] == "user") for r in openai_server.requests]
    assert len(asked) == 4  # t0, t1, t2, t5: short JUNK, "BAD: no idea" and "" were filtered by length first
    assert "Question q0 (row t0): GOOD: Paris is the capital of France.. Score 0.0-10.0." in asked
    assert openai_server.stats()["max_in_flight"] == 1
    store = RunStore(folder)
    scores = {t.id: t.scores.get("filters", {}).get("quality") for t in store.iter_records()}
    store.close()
    assert scores["t0"] == 9.0 and scores["t4"] is None


def test_a_rubric_with_an_unknown_variable_names_the_role(
    tmp_path: Path, openai_server: OpenAIServer
) -> None:
    folder = make_run(tmp_path / "run", openai_server)
    config = FilterConfig.model_validate({"filters": [judge(rubric="{{ reslt.answer }}")]})
    with pytest.raises(TemplateError, match="role 'filter-judge' prompt template: 'reslt' is undefined"):
        asyncio.run(apply_filters(folder, config))


def test_cli_judge_from_yaml_with_a_model_flag(tmp_path: Path, openai_server: OpenAIServer) -> None:
    openai_server.script(judge_responder)
    folder = make_run(tmp_path / "run", openai_server)
    config = tmp_path / "filters.yaml"
    config.write_text(yaml.safe_dump({"filters": [judge(model=None)]}))
    args = ["filter", str(folder), "-c", str(config), "--model", f"openai:other@{openai_server.base_url}"]
    result = CliRunner().invoke(app, [*args, "--concurrency", "2"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "filtered:judge: 4" in text and "judge: 7 calls (0 from the call cache)" in text
    assert {r["model"] for r in openai_server.requests} == {"other"}
    summary = json.loads((folder / "filters.json").read_text())
    assert summary["filters"][0]["kind"] == "judge" and summary["counts"]["filtered:judge"] == 4
