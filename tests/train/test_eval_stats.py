"""Few-shot baseline prompts, bootstrap intervals, paired comparison, the EM plot and held-out splits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from synth.cli.eval import eval_app
from synth.testing.openai_server import OpenAIServer
from tests.train.fixtures_train import write_jsonl
from train.errors import TrainError
from train.fewshot import few_shot_messages, select_examples
from train.heldout import overlaps, split_heldout
from train.qa import load_qa
from train.stats import bootstrap_interval, compare_predictions, paired_bootstrap

EVAL = [
    {
        "id": "e1",
        "question": "Who wrote Hamlet?",
        "answers": ["Shakespeare"],
        "passage": "Hamlet, by Shakespeare.",
    },
    {"id": "e2", "question": "Capital of France?", "answers": ["Paris"], "passage": "Paris is in France."},
]
TRAIN = [
    {"id": "t1", "question": "who wrote  HAMLET", "answers": ["x"]},  # the same question, normalised
    {"id": "e2", "question": "Another question?", "answers": ["x"]},  # the same id
    {"id": "t3", "question": "Largest planet?", "answers": ["Jupiter"], "passage": "Jupiter is the largest."},
    {
        "id": "t4",
        "question": "Who painted the Mona Lisa?",
        "answers": ["Leonardo"],
        "passage": "Leonardo did.",
    },
]


def test_few_shot_examples_refuse_eval_questions_by_id_and_text(tmp_path: Path) -> None:
    eval_rows = load_qa(write_jsonl(tmp_path / "eval.jsonl", EVAL))
    examples, refused = select_examples(write_jsonl(tmp_path / "train.jsonl", TRAIN), 2, eval_rows)
    assert [e["id"] for e in examples] == ["t3", "t4"]
    assert len(refused) == 2 and "who wrote  HAMLET" in refused[0] and "id 'e2'" in refused[1]
    with pytest.raises(TrainError, match=r"--few-shot 3 needs 3 rows .* found 2 \(2 refused"):
        select_examples(tmp_path / "train.jsonl", 3, eval_rows)


def test_few_shot_prompts_use_the_trained_format(tmp_path: Path) -> None:
    examples = load_qa(write_jsonl(tmp_path / "train.jsonl", TRAIN[2:]))
    passages = [{"id": "1", "title": "", "text": "P."}]
    plain, header = few_shot_messages("Q?", passages, examples, "plain")
    assert [m["role"] for m in plain] == ["user", "assistant", "user", "assistant", "user"] and header is None
    assert plain[0]["content"].startswith("[1]\nJupiter is the largest.\n\nQuestion: Largest planet?")
    assert plain[1]["content"] == "Jupiter" and plain[-1]["content"].endswith("Question: Q?\nAnswer briefly.")
    smart, header = few_shot_messages("Q?", passages, examples[:1], "smart")
    assert [m["role"] for m in smart] == ["user", "tool", "assistant", "user", "tool"]
    assert smart[2] == {"role": "assistant", "name": "Response Generator", "content": '{"answer": "Jupiter"}'}
    atm, _ = few_shot_messages("Q?", passages, examples, "atm")
    assert [m["role"] for m in atm] == ["system", "user", "assistant", "user", "assistant", "user"]


def test_eval_qa_few_shot_sends_the_examples_and_reports_intervals(
    openai_server: OpenAIServer, tmp_path: Path
) -> None:
    openai_server.script({"Hamlet": "Shakespeare", "France": "Lyon"})
    data = write_jsonl(tmp_path / "eval.jsonl", EVAL)
    train = write_jsonl(tmp_path / "train.jsonl", TRAIN)
    args = [
        "qa",
        "--model",
        f"openai:x@{openai_server.base_url}",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "e"),
    ]
    result = CliRunner().invoke(eval_app, [*args, "--few-shot", "1", "--few-shot-from", str(train)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert summary["few_shot"]["ids"] == ["t3"] and len(summary["few_shot"]["refused"]) == 2
    assert summary["exact_match"] == 0.5
    interval = summary["intervals"]["exact_match"]
    assert interval["low"] <= 0.5 <= interval["high"] and interval["low"] == 0.0 and interval["high"] == 1.0
    roles = [[m["role"] for m in r["messages"]] for r in openai_server.requests]
    assert roles == [["user", "assistant", "user"]] * 2
    assert openai_server.requests[0]["messages"][1]["content"] == "Jupiter"
    missing = CliRunner().invoke(eval_app, [*args, "--few-shot", "1"])
    assert missing.exit_code != 0 and "--few-shot-from" in str(missing.exception)


def test_bootstrap_interval_and_paired_difference() -> None:
    scores = [1.0] * 30 + [0.0] * 70
    interval = bootstrap_interval(scores)
    assert interval["mean"] == 0.3 and 0.2 < interval["low"] < 0.3 < interval["high"] < 0.4
    assert bootstrap_interval(scores) == interval  # seeded: reproducible
    same = paired_bootstrap(scores, scores)
    assert same["difference"] == 0 and same["p_value"] == 1.0
    better = paired_bootstrap(scores, [1.0] * 45 + [0.0] * 55)  # B right on 15 more questions, never worse
    assert better["difference"] == 0.15 and better["low"] > 0 and better["p_value"] < 0.01
    noisy = paired_bootstrap([1.0, 0.0] * 20, [0.0, 1.0] * 20)  # as many wins as losses
    assert noisy["low"] < 0 < noisy["high"] and noisy["p_value"] > 0.5


def _predictions(path: Path, ems: list[int], ids: list[str] | None = None) -> Path:
    ids = ids or [f"q{i}" for i in range(len(ems))]
    rows: list[dict[str, Any]] = [
        {"id": i, "em": float(e), "f1": float(e)} for i, e in zip(ids, ems, strict=True)
    ]
    return write_jsonl(path, rows)


def test_compare_cli_and_plot(tmp_path: Path) -> None:
    a = _predictions(tmp_path / "a.jsonl", [0] * 20 + [1] * 20)
    b = _predictions(tmp_path / "b.jsonl", [1] * 40)
    result = CliRunner().invoke(eval_app, ["compare", str(a), str(b), "-o", str(tmp_path / "cmp.json")])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "cmp.json").read_text())
    assert saved["exact_match"]["difference"] == 0.5 and saved["exact_match"]["low"] > 0
    other = _predictions(tmp_path / "c.jsonl", [1] * 40, [f"x{i}" for i in range(40)])
    with pytest.raises(TrainError, match="not on the same questions"):
        compare_predictions(a, other)

    summaries = []
    for name, ems in (("base", [0] * 8 + [1] * 2), ("tuned", [1] * 6 + [0] * 4)):
        folder = tmp_path / name
        folder.mkdir()
        records = [{"em": float(e), "f1": float(e)} for e in ems]
        from train.stats import score_intervals

        (folder / "summary.json").write_text(
            json.dumps({"model": name, "intervals": score_intervals(records)})
        )
        summaries.append(str(folder))
    png = tmp_path / "em.png"
    result = CliRunner().invoke(
        eval_app, ["plot", *summaries, "-o", str(png), "--label", "base", "--label", "sft"]
    )
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_split_keeps_same_questions_on_one_side(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "question": f"Question number {i}?", "answers": ["a"]} for i in range(40)]
    rows += [{"id": "dup", "question": "the question number 3", "answers": ["a"]}]  # same text as r3
    rows += [{"id": "r5", "question": "Something else entirely", "answers": ["a"]}]  # same id as r5
    sides = split_heldout(rows, 10, dev_size=5, seed=1)
    assert len(sides["eval"]) == 10 and len(sides["dev"]) == 5 and len(sides["train"]) == 27
    for a, b in (("train", "eval"), ("train", "dev"), ("dev", "eval")):
        assert overlaps(sides[a], sides[b]) == []
    side_of = {r["id"] + r["question"]: s for s, side in sides.items() for r in side}
    assert side_of["dupthe question number 3"] == side_of["r3Question number 3?"]
    assert split_heldout(rows, 10, dev_size=5, seed=1) == sides
    with pytest.raises(TrainError, match="cannot hold out 50 eval"):
        split_heldout(rows, 50)
    data = write_jsonl(tmp_path / "qa.jsonl", rows)
    result = CliRunner().invoke(eval_app, ["split", str(data), "-o", str(tmp_path / "s"), "--eval", "10"])
    assert result.exit_code == 0, result.output
    held = [json.loads(line) for line in (tmp_path / "s" / "eval.jsonl").read_text().splitlines()]
    train = [json.loads(line) for line in (tmp_path / "s" / "train.jsonl").read_text().splitlines()]
    assert len(held) == 10 and len(train) == 32 and overlaps(train, held) == []
