"""``synth eval qa --attack``: EM / F1 on the clean vs attacked contexts of an ATM run (or its mito export),
against the scripted generator over the loopback server and a tiny model folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from graphs.atm import GRAPH
from synth.cli.eval import eval_app
from synth.dataset.export import export_run
from synth.engine.store import RunStore
from tests.atm_script import AtmScript
from tests.graphs.test_atm import france, run_rows
from tests.train.fixtures_train import tiny_model
from train.errors import TrainError
from train.eval_attack import attack_prompts, load_attack, run_attack_eval

ROWS = [
    france("what is the capital of france"),
    france("name the capital of france"),
    france("which city is the capital of france"),
    {"question": "who wrote hamlet", "answers": ["Shakespeare"], "passage": "Shakespeare wrote Hamlet."},
    # the scripted generator answers with the first word of the first document: "The" (EM 0 even clean)
    {"question": "what river crosses paris", "answers": ["Seine"], "passage": "The Seine crosses Paris."},
]


@pytest.fixture(autouse=True)
def index_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTH_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def atm_run(tmp_path: Path, openai_server: Any) -> Path:
    records = run_rows(tmp_path, openai_server, ROWS, AtmScript(), n_fabrications=2)
    assert all(r.status == "ok" for r in records.values()), [r.error for r in records.values()]
    return tmp_path / "run"


def predictions(folder: Path) -> dict[str, dict[str, Any]]:
    lines = (folder / "predictions.jsonl").read_text().splitlines()
    return {row["question"]: row for row in map(json.loads, lines)}


def test_eval_attack_on_an_atm_run_through_the_cli(atm_run: Path, tmp_path: Path, openai_server: Any) -> None:
    out = tmp_path / "eval"
    model = f"openai:scripted@{openai_server.base_url}"
    args = ["qa", "--model", model, "--attack", str(atm_run), "--out", str(out)]
    result = CliRunner().invoke(eval_app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    # clean: the first document's first word (4 of 5 right); attacked: "Lyon", from a fabrication
    assert summary["rows"] == 5 and summary["style"] == "atm"
    assert summary["exact_match"] == 0.8 and summary["attacked_exact_match"] == 0.0
    assert summary["misled"] == 0.8 and summary["attacked_f1"] == 0.0
    rows = predictions(out)
    hamlet = rows["who wrote hamlet"]
    assert hamlet["clean"]["prediction"] == "Shakespeare" and hamlet["clean"]["em"] == 1.0
    assert hamlet["attacked"]["prediction"] == "Lyon" and hamlet["misled"] is True
    assert hamlet["clean"]["passages"] == ["seed-0"]
    assert sorted(hamlet["attacked"]["passages"]) == ["fabrication-0", "fabrication-1", "seed-0"]
    seine = rows["what river crosses paris"]
    assert seine["clean"]["prediction"] == "The" and seine["misled"] is False
    # the generator got its role's own prompt: system instructions + documents + question
    generator = [r for r in openai_server.requests if "You are the Generator" in r["messages"][0]["content"]]
    assert any("FAKE" in r["messages"][1]["content"] for r in generator)
    assert "attacked EM 0.0" in result.output


def test_prompts_match_the_graph_and_the_mito_export(atm_run: Path, tmp_path: Path) -> None:
    rows = {r["question"]: r for r in load_attack(atm_run)}
    store = RunStore(atm_run)
    stored = {r.result["question"]: r.result for r in store.iter_records("ok")}
    store.close()
    for question, result in stored.items():  # re-rendered from passages == what the graph sent
        assert attack_prompts(rows[question], "clean", "atm")[0] == result["clean_prompt"]
        assert attack_prompts(rows[question], "attacked", "atm")[0] == result["attacked_prompt"]
    plain = attack_prompts(rows["who wrote hamlet"], "clean", "plain")[0]
    assert plain == [{"role": "user", "content": "[seed-0]\nShakespeare wrote Hamlet.\n\nQuestion: who wrote "
                      "hamlet\nAnswer briefly."}]  # fmt: skip

    export_run(atm_run, GRAPH, "mito", tmp_path / "mito")
    exported = {r["question"]: r for r in load_attack(tmp_path / "mito")}
    assert set(exported) == set(stored)
    for question, row in exported.items():
        assert attack_prompts(row, "attacked", "atm")[0] == stored[question]["attacked_prompt"]
        assert row["answers"] == [stored[question]["gold_answer"]]
    with pytest.raises(TrainError, match="use --style atm"):
        attack_prompts(exported["who wrote hamlet"], "clean", "plain")


def test_eval_attack_on_a_model_folder_with_the_mito_export(atm_run: Path, tmp_path: Path) -> None:
    export_run(atm_run, GRAPH, "mito", tmp_path / "mito")
    model = tiny_model(tmp_path / "tiny")
    summary = run_attack_eval(str(model), tmp_path / "mito", out=tmp_path / "e", max_new_tokens=3, limit=3)
    assert summary["rows"] == 3 and summary["model_folder"] == str(model)
    rows = predictions(tmp_path / "e")
    for row in rows.values():
        for context in ("clean", "attacked"):
            scored = row[context]
            assert scored["em"] == float(scored["prediction"].lower() == row["answers"][0].lower())
    assert summary["attacked_exact_match"] == sum(r["attacked"]["em"] for r in rows.values()) / 3


def test_attack_sources_are_checked(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="does not exist; pass an ATM run folder"):
        load_attack(tmp_path / "nope")
    (tmp_path / "data.jsonl").write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    with pytest.raises(TrainError, match="not a mito export's prompt / adv_prompt / answer"):
        load_attack(tmp_path / "data.jsonl")
    result = CliRunner().invoke(eval_app, ["qa", "--model", "openai:x@http://127.0.0.1:9/v1"])
    assert result.exit_code != 0 and "exactly one of --data" in str(result.exception)
