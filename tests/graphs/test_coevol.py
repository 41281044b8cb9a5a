"""CoEvol's accept/stop rule, end to end over HTTP (loopback server) and asserted on stored trajectories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from graphs.coevol.graph import GRAPH, merge_judge_scores
from synth.engine.session import RunRequest, run_session
from synth.engine.store import RunStore
from tests.coevol_script import coevol_responder


def run_rows(tmp_path: Path, server: Any, rows: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    server.script(coevol_responder)
    request = RunRequest(
        graph="coevol",
        input=seeds,
        out=tmp_path / "run",
        options=options,
        models={"default": f"openai:scripted@{server.base_url}"},
        concurrency=4,
    )
    import asyncio

    asyncio.run(run_session(request))
    store = RunStore(tmp_path / "run")
    records = {r.seed["instruction"]: r for r in store.iter_records()}
    store.close()
    for record in records.values():  # every result reads back through the graph's typed result model
        if record.status == "ok":
            record.result_as(GRAPH.result_model)
    return records


def test_accept_tie_judge_failure_and_max_rounds(tmp_path: Path, openai_server: Any) -> None:
    records = run_rows(
        tmp_path,
        openai_server,
        [
            {"instruction": "ACCEPT this", "output": "v0"},
            {"instruction": "TIE this", "output": "v0"},
            {"instruction": "BADJUDGE this", "output": "v0"},
            {"instruction": "HALF this", "output": "v0"},
            {"instruction": "WORSE this", "output": "v0"},
            {"instruction": "ACCEPT without output"},
        ],
        max_rounds=2,
    )
    assert all(r.status == "ok" for r in records.values()), {k: r.error for k, r in records.items()}

    accept = records["ACCEPT this"].result
    assert accept["accepted_rounds"] == 2 and accept["stop_reason"] == "max_rounds (2) reached"
    assert accept["evolved"] == "better(better(v0))" and accept["original"] == "v0"
    assert [r["scores"]["new"] for r in accept["rounds"]] == [1.0, 1.0]

    tie = records["TIE this"].result
    assert tie["accepted_rounds"] == 0 and tie["evolved"] == "v0"
    assert tie["rounds"][0]["scores"] == {
        "previous": 1.0,
        "new": 1.0,
        "runs": [[1.0, 1.0], [1.0, 1.0]],
        "verdicts": ["equal", "equal"],
        "judge_error": False,
    }
    assert "ties reject" in tie["stop_reason"]

    bad = records["BADJUDGE this"]
    assert bad.result["accepted_rounds"] == 0 and bad.result["rounds"][0]["scores"]["judge_error"]
    assert bad.result["stop_reason"] == "judge failed to parse in both orders"
    judge_steps = [s for s in bad.steps if s.role == "judge"]
    assert len(judge_steps) == 2 and all(
        not s.ok and s.repaired and s.error_reason == "validation" for s in judge_steps
    )
    assert all("first one" in s.raw for s in judge_steps)  # raw text kept on failure

    half = records["HALF this"].result
    assert half["accepted_rounds"] == 2 and half["rounds"][0]["scores"]["runs"][1] is None

    worse = records["WORSE this"].result
    assert worse["accepted_rounds"] == 0 and worse["rounds"][0]["scores"]["new"] == 0.0

    fresh = records["ACCEPT without output"]
    assert fresh.result["original"] == "first draft" and fresh.steps[0].role == "responder"


def test_one_round_has_the_documented_steps_and_a_four_message_debate(
    tmp_path: Path, openai_server: Any
) -> None:
    records = run_rows(
        tmp_path, openai_server, [{"instruction": "ACCEPT once", "output": "v0"}], max_rounds=1
    )
    record = records["ACCEPT once"]
    assert [s.role for s in record.steps] == [
        "positive_debater",
        "critical_debater",
        "positive_debater",
        "critical_debater",
        "advisor",
        "editor",
        "judge",
        "judge",
    ]
    debate = record.steps[:4]
    assert [s.meta["turn"] for s in debate] == [1, 1, 2, 2]
    assert all(s.latency_s > 0 for s in record.steps)  # debate turns are timed too (one team run)
    # the critic heard the defender: its first request carries the defender's argument
    assert any("defender argues" in m["content"] for m in debate[1].messages)
    assert record.result["stop_reason"] == "max_rounds (1) reached"
    assert record.usage.calls == 8 and record.usage.prompt_tokens > 0
    assert record.provenance and record.provenance.role_templates["judge"]


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        (["assistant 2", "assistant 1"], (0.0, 1.0, False)),
        (["assistant 1", "assistant 2"], (1.0, 0.0, False)),
        (["equal", "assistant 1"], (0.5, 1.0, False)),
        ([None, "assistant 1"], (0.0, 1.0, False)),
        ([None, None], (0.0, 0.0, True)),
    ],
)
def test_merge_judge_scores_by_position(
    verdicts: list[str | None], expected: tuple[float, float, bool]
) -> None:
    scores = merge_judge_scores(verdicts)
    assert (scores["previous"], scores["new"], scores["judge_error"]) == expected
