"""Reuse of failures: the standard formats (sft, dpo, corrections, rl) from any graph's scored candidates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from datasets import load_dataset
from pydantic import BaseModel

from graphs.coevol import GRAPH as COEVOL
from graphs.smart import GRAPH as SMART
from synth.dataset.export import export_run, formats_for
from synth.dataset.reuse import CORRECTION_REQUEST, Candidate, Candidates
from synth.engine.store import RunStore
from synth.errors import ExportError
from synth.graph import SynthGraph
from synth.trajectory import Trajectory
from tests.tiny import build_tiny_model


def coevol(i: int, rounds: list[dict[str, Any]], evolved: str | None = None) -> Trajectory:
    accepted = sum(r["accepted"] for r in rounds)
    return Trajectory(
        id=f"c{i}",
        graph="coevol",
        seed={"instruction": f"Q{i}"},
        result={
            "instruction": f"Q{i}",
            "input": "",
            "original": "orig",
            "evolved": evolved or (rounds[-1]["candidate"] if accepted else "orig"),
            "accepted_rounds": accepted,
            "rounds": rounds,
            "stop_reason": "",
        },
    )


def judged(candidate: str, previous: float, new: float, accepted: bool) -> dict[str, Any]:
    return {
        "round": 1,
        "candidate": candidate,
        "accepted": accepted,
        "scores": {"previous": previous, "new": new, "judge_error": False},
    }


def rows(graph: SynthGraph, name: str, trajectory: Trajectory) -> list[dict[str, Any]]:
    return list(formats_for(graph)[name].rows(trajectory))


def test_coevol_pairs_accepted_edits_and_judge_rejected_revisions() -> None:
    two_rounds = coevol(0, [judged("r1", 0, 1, True), judged("r2", 0.5, 1, True), judged("r3", 1, 0, False)])
    (pair,) = rows(COEVOL, "dpo", two_rounds)
    assert (pair["chosen"][0]["content"], pair["rejected"][0]["content"]) == ("r2", "orig")
    assert rows(COEVOL, "sft", two_rounds)[0]["messages"][-1]["content"] == "r2"
    # No round accepted, but the judge scored the revision strictly lower: the original is preferred.
    rejected = coevol(1, [judged("worse", 1, 0, False)])
    (pair,) = rows(COEVOL, "dpo", rejected)
    assert (pair["chosen"][0]["content"], pair["rejected"][0]["content"]) == ("orig", "worse")
    # A tie says nothing: no pair, and SFT keeps the original.
    tie = coevol(2, [judged("same", 1, 1, False)])
    assert rows(COEVOL, "dpo", tie) == [] and rows(COEVOL, "corrections", tie) == []
    assert rows(COEVOL, "sft", tie)[0]["messages"][-1]["content"] == "orig"
    (fix,) = rows(COEVOL, "corrections", two_rounds)
    assert [m["role"] for m in fix["prompt"]] == ["user", "assistant", "user"]
    assert fix["prompt"][1]["content"] == "orig" and fix["prompt"][2]["content"] == CORRECTION_REQUEST
    assert fix["completion"] == [{"role": "assistant", "content": "r2"}]
    (rl,) = rows(COEVOL, "rl", two_rounds)
    assert rl["answers"] == [] and rl["reference"] == "r2"


def smart(i: int, model_answer: str, golds: list[str]) -> Trajectory:
    return Trajectory(
        id=f"s{i}",
        graph="smart",
        seed={"question": f"q{i}"},
        result={
            "instruction": f"q{i}",
            "answer": golds[0] if golds else model_answer,
            "model_answer": model_answer,
            "answers": golds,
        },
    )


def test_smart_pairs_gold_over_an_exact_match_miss() -> None:
    wrong = smart(0, "Lyon", ["Paris"])
    (pair,) = rows(SMART, "dpo", wrong)
    assert (pair["chosen"][0]["content"], pair["rejected"][0]["content"]) == ("Paris", "Lyon")
    (fix,) = rows(SMART, "corrections", wrong)
    assert fix["prompt"][1]["content"] == "Lyon" and fix["completion"][0]["content"] == "Paris"
    right = smart(1, "paris!", ["Paris"])
    assert rows(SMART, "dpo", right) == [] and rows(SMART, "corrections", right) == []
    no_gold = smart(2, "Rome", [])
    assert rows(SMART, "dpo", no_gold) == []
    # SMART's own `rl` and `sft` (the long transcript) win over the standard ones of the same name.
    assert formats_for(SMART)["rl"] is SMART.exports["rl"]
    assert "reference" not in SMART.exports["rl"].features()
    assert formats_for(SMART)["sft"].description == "alias of sft-long"


class _Seed(BaseModel):
    topic: str


USER_GRAPH = SynthGraph(
    name="slogans", description="a user graph that declares result.candidates", version="1", seed_model=_Seed,
    roles=(), build=lambda *a, **k: None, to_trajectory=lambda state: {}, exports={},
)  # fmt: skip


def user_record(i: int, scores: list[float], correct: list[bool | None] | None = None) -> Trajectory:
    correct = correct or [None] * len(scores)
    candidates = Candidates(
        prompt=[{"role": "user", "content": f"A slogan about topic {i}"}],
        answers=[
            Candidate(text=f"slogan {i}-{k}", score=s, correct=c)
            for k, (s, c) in enumerate(zip(scores, correct, strict=True))
        ],
        gold=[f"gold {i}"],
    )
    return Trajectory(
        id=f"u{i}", graph="slogans", seed={"topic": str(i)}, result={"candidates": candidates.model_dump()}
    )


def test_any_graph_that_declares_candidates_gets_every_standard_format() -> None:
    record = user_record(0, [0.2, 0.9, 0.5])
    assert set(formats_for(USER_GRAPH)) == {"sft", "dpo", "corrections", "rl"}
    (pair,) = rows(USER_GRAPH, "dpo", record)
    assert (pair["chosen"][0]["content"], pair["rejected"][0]["content"]) == ("slogan 0-1", "slogan 0-0")
    assert rows(USER_GRAPH, "rl", record)[0]["answers"] == ["gold 0"]
    # The best-scored answer is known wrong: it is never the SFT target nor "chosen".
    wrong_best = user_record(1, [0.9, 0.1], correct=[False, True])
    assert rows(USER_GRAPH, "sft", wrong_best)[0]["messages"][-1]["content"] == "slogan 1-1"
    assert rows(USER_GRAPH, "dpo", wrong_best) == []  # the wrong one scored higher: no honest pair
    bad = Trajectory(id="u9", graph="slogans", seed={}, result={"candidates": {"answers": []}})
    with pytest.raises(ExportError, match=r"trajectory u9 .*result.candidates is invalid: prompt"):
        rows(USER_GRAPH, "sft", bad)


def test_every_standard_format_loads_and_corrections_train_with_trl(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    folder = tmp_path / "run"
    store = RunStore(folder)
    store.write([user_record(i, [0.1 * i, 1.0]) for i in range(4)])
    store.write_config({"graph": "slogans", "input": "seeds.jsonl", "models": {"default": "replay:x"}}, "f")
    store.close()
    expected = {"sft": 4, "dpo": 4, "corrections": 4, "rl": 4}
    for name, count in expected.items():
        result = export_run(folder, USER_GRAPH, name, tmp_path / name)
        assert result.rows == count, result.describe()
        assert load_dataset(str(tmp_path / name), split="train").num_rows == count
    dataset = load_dataset(str(tmp_path / "corrections"), split="train").remove_columns("id")
    texts = [m["content"] for row in dataset for m in row["prompt"] + row["completion"]]
    model_dir = build_tiny_model(tmp_path / "tiny", [*texts, "### User ### Assistant"])
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        train_dataset=dataset,
        args=SFTConfig(
            output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2, report_to=[],
            use_cpu=True, save_strategy="no",
        ),
    )  # fmt: skip
    assert trainer.train().global_step == 2
