"""``synth eval qa``: SQuAD EM/F1 against a scripted model, passages from the data or a corpus, and a
model folder generating in the plain chat format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synth.chat_template import render_prompt
from synth.cli.eval import eval_app
from synth.metrics import normalize_answer
from synth.testing.openai_server import OpenAIServer
from tests.train.fixtures_train import tiny_model, write_jsonl
from train.eval import run_qa_eval
from train.qa import build_messages, exact_match, extract_answer, f1_score

ROWS = [
    {"id": "q1", "question": "Who wrote Hamlet?", "answers": ["Shakespeare", "William Shakespeare"]},
    {
        "id": "q2",
        "question": "What tower is in Paris?",
        "answers": ["Eiffel Tower"],
        "passage": "The Eiffel Tower.",
    },
    {"id": "q3", "question": "Capital of France?", "answers": ["Paris"]},
    {"id": "q4", "question": "Who painted the Mona Lisa?", "answers": ["Leonardo"]},
    {"id": "q5", "question": "Largest planet?", "answers": "Jupiter"},
]
SCRIPT = {
    "Who wrote Hamlet?": "Shakespeare",  # EM 1
    "What tower": "the Eiffel tower.",  # EM 1 after normalisation
    "Capital of France": '{"answer": "Paris", "citations": []}',  # EM 1 from the JSON answer
    "Mona Lisa": "Leonardo da Vinci",  # EM 0, F1 2 * (1/3 * 1) / (4/3) = 0.5
    "Largest planet": "I do not know",  # EM 0, F1 0
}


def test_metrics_follow_squad() -> None:
    assert normalize_answer("The  Eiffel, tower!") == "eiffel tower"
    assert exact_match("an apple", ["Apple"]) == 1.0 and exact_match("apples", ["apple"]) == 0.0
    assert f1_score("Leonardo da Vinci", ["Leonardo"]) == pytest.approx(0.5)
    assert f1_score("", ["x"]) == 0.0 and f1_score("the", ["a"]) == 1.0  # both empty after normalising
    assert extract_answer('  {"answer": "Paris"} trailing') == "Paris"
    assert extract_answer("\nRed.\nmore text") == "Red."


def test_eval_qa_against_scripted_model(openai_server: OpenAIServer, tmp_path: Path) -> None:
    openai_server.script(SCRIPT)
    data = write_jsonl(tmp_path / "qa.jsonl", ROWS)
    out = tmp_path / "eval"
    args = ["qa", "--model", f"openai:x@{openai_server.base_url}", "--data", str(data), "--out", str(out)]
    result = CliRunner().invoke(eval_app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == 5 and summary["exact_match"] == 0.6
    assert summary["f1"] == pytest.approx((1 + 1 + 1 + 0.5 + 0) / 5, abs=1e-4)
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["em"] for p in predictions] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert predictions[2]["prediction"] == "Paris" and predictions[2]["raw"].startswith("{")
    assert predictions[1]["passages"] == ["1"]
    # The row's passage went into the prompt, before the question.
    sent = [r["messages"][-1]["content"] for r in openai_server.requests]
    assert any(s.startswith("[1]\nThe Eiffel Tower.\n\nQuestion: What tower is in Paris?") for s in sent)
    assert '"exact_match": 0.6' in result.output


def test_eval_qa_retrieves_from_a_corpus_and_limits(
    openai_server: OpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNTH_CACHE", str(tmp_path / "cache"))
    openai_server.script(SCRIPT)
    corpus = write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"id": "p1", "title": "Hamlet", "text": "Hamlet was written by William Shakespeare."},
            {"id": "p2", "title": "Jupiter", "text": "Jupiter is the largest planet."},
            {"id": "p3", "title": "Paris", "text": "Paris is the capital of France."},
        ],
    )
    data = write_jsonl(tmp_path / "qa.jsonl", ROWS)
    summary = run_qa_eval(
        f"openai:x@{openai_server.base_url}",
        data,
        out=tmp_path / "e",
        corpus=str(corpus),
        retrieve_k=1,
        limit=2,
    )
    assert summary["rows"] == 2 and summary["passages"].startswith("retrieved top-1")
    first = json.loads((tmp_path / "e" / "predictions.jsonl").read_text().splitlines()[0])
    assert first["passages"] == ["p1"]
    sent = [r["messages"][-1]["content"] for r in openai_server.requests]
    assert any(s.startswith("[p1] Hamlet\nHamlet was written by William Shakespeare.") for s in sent)


def test_eval_qa_input_errors_say_how_to_fix(tmp_path: Path) -> None:
    from train.errors import TrainError

    data = write_jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answers": []}])
    with pytest.raises(TrainError, match=r"qa.jsonl:1: field 'answers' must be a non-empty list"):
        run_qa_eval("openai:x@http://127.0.0.1:9/v1", data)
    with pytest.raises(TrainError, match="--retrieve 3 needs --corpus"):
        run_qa_eval("openai:x@http://127.0.0.1:9/v1", data, retrieve_k=3)
    with pytest.raises(TrainError, match="neither a model folder"):
        run_qa_eval(str(tmp_path), write_jsonl(tmp_path / "ok.jsonl", ROWS))


def test_eval_qa_on_a_model_folder_uses_the_chat_format(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "tiny")
    data = write_jsonl(tmp_path / "qa.jsonl", ROWS)
    summary = run_qa_eval(str(model), data, out=tmp_path / "e", style="smart", max_new_tokens=3, batch_size=4)
    assert summary["rows"] == 5 and summary["model_folder"] == str(model)
    assert len((tmp_path / "e" / "predictions.jsonl").read_text().splitlines()) == 5

    from transformers import AutoTokenizer

    messages, header = build_messages("Q?", [{"id": "1", "title": "T", "text": "P."}], "smart")
    prompt = render_prompt(AutoTokenizer.from_pretrained(model), messages, assistant_header=header)
    assert prompt.endswith("### User\nQ?\n\n### Knowledge Retriever\n[1] T\nP.\n\n### Response Generator\n")
