"""ATM end to end over HTTP (loopback server, scripted roles and hand-built prompt log-probabilities)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from graphs.atm.graph import GRAPH, NO_PASSAGES, build
from graphs.atm.seed import AtmSeed, seed_passages
from graphs.atm.trajectory import AtmScores, preference_pair
from synth.engine.inputs import read_rows
from synth.engine.session import RunRequest, run_session
from synth.engine.store import RunStore
from synth.errors import SynthError
from synth.graph import ModelSet
from synth.metrics import has_answer
from synth.models import make_client
from synth.trajectory import Trajectory
from tests.atm_script import GOLD_LP, AtmScript

FRANCE = "Paris is the capital of France. It lies on the Seine."


def france(question: str = "what is the capital of france", **extra: Any) -> dict[str, Any]:
    return {"question": question, "answers": ["Paris"], "passage": FRANCE, "title": "France", **extra}


@pytest.fixture(autouse=True)
def index_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTH_CACHE", str(tmp_path / "cache"))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def spec(server: Any, logprobs: bool = True) -> str:
    return f"openai:scripted@{server.base_url}" + ("?logprobs=vllm" if logprobs else "")


def run_rows(
    tmp_path: Path, server: Any, rows: list[dict[str, Any]], script: AtmScript | None = None, **options: Any
) -> dict[str, Trajectory]:
    server.script(script or AtmScript())
    request = RunRequest(
        graph="atm",
        input=write_jsonl(tmp_path / "seeds.jsonl", rows),
        out=tmp_path / "run",
        options=options,
        models={"default": spec(server)},
        concurrency=4,
        force=True,
    )
    asyncio.run(run_session(request))
    store = RunStore(tmp_path / "run")
    records = {r.seed["question"]: r for r in store.iter_records()}
    store.close()
    for record in records.values():  # every result reads back through the graph's typed result model
        if record.status == "ok":
            record.result_as(GRAPH.result_model)
            AtmScores.model_validate(record.scores)
    return records


def test_n_fabrications_per_question_stay_distinct_with_the_call_cache(
    tmp_path: Path, openai_server: Any
) -> None:
    rows = [france(), france("name the capital of france")]
    script = AtmScript()
    records = run_rows(tmp_path, openai_server, rows, script, n_fabrications=4)
    assert script.calls == {r["question"]: 4 for r in rows}  # the server saw N attacker calls per question
    for record in records.values():
        assert record.status == "ok", record.error
        attacks = [s for s in record.steps if s.role == "attacker"]
        assert sorted(s.meta["sample"] for s in attacks) == [0, 1, 2, 3]
        texts = [f["text"] for f in record.result["fabrications"]]
        assert len(set(texts)) == 4 and all(f["ok"] for f in record.result["fabrications"])
    # A changed option (--force) re-runs every row: the attacker calls all come from the cache, still N
    # distinct samples, and the server is not asked again.
    again = run_rows(tmp_path, openai_server, rows, script, n_fabrications=4, seed=1)
    assert script.calls == {r["question"]: 4 for r in rows}
    for question, record in again.items():
        attacks = [s for s in record.steps if s.role == "attacker"]
        assert all(s.cached for s in attacks)
        fabrications = record.result["fabrications"]
        assert [f["text"] for f in fabrications] == [
            f["text"] for f in records[question].result["fabrications"]
        ]


def test_nll_ranking_picks_the_most_and_least_misleading(tmp_path: Path, openai_server: Any) -> None:
    question = "what is the capital of france LPS: -1.5 -3.25 -0.5"
    record = run_rows(tmp_path, openai_server, [france(question)], n_fabrications=3)[question]
    assert record.status == "ok", record.error
    result = record.result
    nll = {f["text"].rsplit("LP=", 1)[1]: f["nll"] for f in result["fabrications"]}
    assert nll == pytest.approx({"-1.5": 1.5, "-3.25": 3.25, "-0.5": 0.5})
    by_sample = {f["sample"]: f for f in result["fabrications"]}
    assert by_sample[result["chosen"]]["text"].endswith("LP=-3.25")
    assert by_sample[result["rejected"]]["text"].endswith("LP=-0.5")
    assert result["gold_nll"] == pytest.approx(-GOLD_LP)
    assert record.scores["nll_margin"] == pytest.approx(2.75)
    # the scoring requests: the gold answer as a final assistant message, continued, with prompt logprobs
    scoring = [r for r in openai_server.requests if r.get("prompt_logprobs") is not None]
    assert len(scoring) == 3 + 1  # each fabrication, and the gold passage as the reference
    for body in scoring:
        assert body["messages"][-1] == {"role": "assistant", "content": "Paris"}
        assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
        assert "Documents:\n[1] " in body["messages"][1]["content"]


def test_generator_answers_clean_and_attacked_contexts(tmp_path: Path, openai_server: Any) -> None:
    question = "what is the capital of france LPS: -1.0 -4.0 -2.0"
    record = run_rows(tmp_path, openai_server, [france(question)], n_fabrications=3, inject=1)[question]
    result = record.result
    assert result["clean_answer"] == "Paris" and result["exact_match_clean"] is True
    assert result["attacked_answer"] == "Lyon" and result["exact_match_attacked"] is False
    assert record.scores["exact_match_clean"] == 1.0 and record.scores["exact_match_attacked"] == 0.0
    # inject=1: only the most misleading fabrication joins the passage
    kinds = sorted(d["kind"] for d in result["attacked_context"])
    assert kinds == ["fabrication", "passage"]
    fake = next(d for d in result["attacked_context"] if d["kind"] == "fabrication")
    assert fake["sample"] == result["chosen"] and fake["text"].endswith("LP=-4.0")
    assert "FAKE" not in result["clean_prompt"][1]["content"]
    assert fake["text"] in result["attacked_prompt"][1]["content"]
    assert result["passages"] == [
        {"id": "seed-0", "title": "France", "text": FRANCE, "gold": True, "hasanswer": True, "source": "seed"}
    ]
    assert [s.node for s in record.steps][-2:] in (
        ["answer_clean", "answer_attacked"],
        ["answer_attacked", "answer_clean"],
    )


def test_failed_attacker_samples(tmp_path: Path, openai_server: Any) -> None:
    records = run_rows(
        tmp_path,
        openai_server,
        [france("ONEBAD capital of france"), france("BADATTACK capital of france")],
        n_fabrications=3,
    )
    one_bad = records["ONEBAD capital of france"]
    assert one_bad.status == "ok", one_bad.error
    fabrications = one_bad.result["fabrications"]
    assert sum(not f["ok"] for f in fabrications) == 1 and one_bad.scores["fabrications"] == 2
    assert [f["nll"] is None for f in fabrications].count(True) == 1
    all_bad = records["BADATTACK capital of france"]
    assert all_bad.status == "failed" and "every one of the 3 attacker samples failed" in (
        all_bad.error or ""
    )
    assert [s.role for s in all_bad.steps] == ["attacker"] * 3


def test_passages_from_ctxs_and_retrieval(tmp_path: Path, openai_server: Any) -> None:
    corpus = write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"id": "c1", "title": "Cheese", "text": "France is known for cheese and the capital question."},
            {"id": "c2", "title": "Paris", "text": "Paris hosts the capital of france government."},
            {"id": "c3", "title": "Rivers", "text": "The Seine flows through the capital of france."},
        ],
    )
    ctx_row = {
        "question": "capital of france with ctxs",
        "answers": ["Paris"],
        "ctxs": [
            {"id": "x1", "title": "A", "text": "Lyon is a city.", "hasanswer": False},
            {"id": "x2", "title": "B", "text": FRANCE, "hasanswer": True},
        ],
    }
    retrieval_row = {"question": "capital of france", "answers": ["Paris"]}
    records = run_rows(
        tmp_path, openai_server, [ctx_row, retrieval_row], n_fabrications=2, corpus=str(corpus), top_k=3
    )
    with_ctxs = records["capital of france with ctxs"].result
    assert [(p["id"], p["gold"], p["source"]) for p in with_ctxs["passages"][:2]] == [
        ("x1", False, "seed"),
        ("x2", True, "seed"),
    ]
    assert with_ctxs["example"]["id"] == "x2"  # the attacker imitates the gold passage
    retrieved = records["capital of france"].result
    assert {p["source"] for p in retrieved["passages"]} == {"retrieval"}
    golds = [p["id"] for p in retrieved["passages"] if p["gold"]]
    assert golds == ["c2"] and retrieved["example"]["id"] == "c2"  # the top passage holding "Paris"
    assert retrieved["retrieval"][0]["query"] == "capital of france"


def test_a_row_without_passages_fails_with_the_fix(tmp_path: Path, openai_server: Any) -> None:
    question = "capital of france"
    record = run_rows(tmp_path, openai_server, [{"question": question, "answers": ["Paris"]}])[question]
    assert record.status == "failed" and record.error == NO_PASSAGES and "--corpus" in NO_PASSAGES


def test_seed_rows_are_validated_with_file_and_line(tmp_path: Path) -> None:
    seeds = write_jsonl(
        tmp_path / "s.jsonl",
        [france(), {"question": "q"}, {"question": "q", "answers": [" "]}, {"answers": ["x"]}],
    )
    rows = list(read_rows(seeds, AtmSeed))
    assert rows[0].error is None
    for line, field in ((2, "answers"), (3, "answers"), (4, "question")):
        error = rows[line - 1].error or ""
        assert f"{seeds}:{line}" in error and field in error, error
    assert AtmSeed.model_validate({"question": "q", "answers": "one"}).answers == ["one"]


def test_seed_passage_shapes_and_hasanswer() -> None:
    own = seed_passages({"passage": {"id": "p", "title": "T", "text": "x"}})
    assert own == [{"id": "p", "title": "T", "text": "x", "gold": True, "source": "seed"}]
    unflagged = seed_passages({"ctxs": [{"text": "a"}, {"text": "b", "title": "B"}]})
    assert [(p["id"], p["gold"]) for p in unflagged] == [("ctx-0", True), ("ctx-1", True)]
    assert has_answer("Wilhelm Conrad Röntgen , of Germany , won", ["wilhelm conrad röntgen"])
    assert not has_answer("Parisian cafés", ["Paris"])  # whole words only


def test_preference_pair_needs_two_different_scores() -> None:
    fab = [{"sample": 0, "nll": 1.0}, {"sample": 1, "nll": 1.0}, {"sample": 2, "nll": None}]
    assert preference_pair(fab) is None and preference_pair(fab[:1]) is None
    assert preference_pair([*fab, {"sample": 3, "nll": 2.0}]) == (3, 0)


def test_build_refuses_a_generator_without_logprobs(openai_server: Any) -> None:
    plain, scoring = make_client(spec(openai_server, False)), make_client(spec(openai_server))
    with pytest.raises(SynthError) as info:
        build(ModelSet(default=plain, specs={"default": spec(openai_server, False)}), **GRAPH.default_options)
    message = str(info.value)
    assert "role 'generator'" in message and spec(openai_server, False) in message
    assert "?logprobs=vllm" in message and "local:gemma-3-270m" in message
    # the attacker may use any backend; only the generator scores
    models = ModelSet(default=plain, by_role={"generator": scoring})
    assert build(models, **GRAPH.default_options) is not None
    with pytest.raises(ValueError, match="n_fabrications must be >= 1"):
        build(ModelSet(default=scoring), **{**GRAPH.default_options, "n_fabrications": 0})
    with pytest.raises(ValueError, match="drop_ratio must be between 0 and 1"):
        build(ModelSet(default=scoring), **{**GRAPH.default_options, "drop_ratio": 1.5})
