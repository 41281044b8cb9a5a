"""ATM exports (atm-dpo, mito, sft): shapes, load_dataset, TRL DPO, and `synth run atm` via the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from datasets import load_dataset

from graphs.atm import GRAPH
from synth.dataset.export import export_run
from synth.errors import SynthError
from tests.atm_script import AtmScript
from tests.graphs.test_atm import france, run_rows, spec, write_jsonl

ROWS = [
    france("what is the capital of france LPS: -1.0 -2.0 -3.0"),
    france("which city is the capital of france LPS: -2.5 -0.5"),
    france("tell me the capital of france LPS: -4.0 -1.0"),
]


@pytest.fixture(autouse=True)
def index_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTH_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def atm_run(tmp_path: Path, openai_server: Any) -> Path:
    records = run_rows(tmp_path, openai_server, ROWS, n_fabrications=3, closed_book_ratio=0.0)
    assert all(r.status == "ok" for r in records.values()), [r.error for r in records.values()]
    return tmp_path / "run"


def export(run_dir: Path, name: str, out: Path) -> Any:
    result = export_run(run_dir, GRAPH, name, out / name)
    assert result.rows > 0, result.describe()
    return load_dataset(str(out / name), split="train")


def test_atm_dpo_mito_and_sft_have_the_documented_shapes(atm_run: Path, tmp_path: Path) -> None:
    dpo = export(atm_run, "atm-dpo", tmp_path)
    assert dpo.column_names == ["id", "prompt", "chosen", "rejected"] and len(dpo) == 3
    for row in dpo:
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]
        assert "You are the Attacker" in row["prompt"][0]["content"]
        assert "Correct answer: Paris" in row["prompt"][1]["content"]
        chosen, rejected = (json.loads(row[k][0]["content"]) for k in ("chosen", "rejected"))
        assert set(chosen) == {"title", "text"} and row["chosen"][0]["role"] == "assistant"
        # chosen = highest NLL = the lowest listed log-probability; rejected = the highest
        question = row["prompt"][1]["content"].split("LPS: ")[1].split("\n")[0]
        listed = [float(x) for x in question.split()]
        assert chosen["text"].endswith(f"LP={min(listed)}") and rejected["text"].endswith(f"LP={max(listed)}")
    assert export(atm_run, "dpo", tmp_path)["chosen"] == dpo["chosen"]  # the standard name, same pairs

    mito = export(atm_run, "mito", tmp_path)
    assert mito.column_names == ["id", "prompt", "adv_prompt", "answer"] and len(mito) == 3
    row = mito[0]
    assert row["answer"] == "Paris" and [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert "FAKE" not in row["prompt"][1]["content"] and "FAKE" in row["adv_prompt"][1]["content"]
    assert row["prompt"][0] == row["adv_prompt"][0]  # same instructions, only the documents differ

    sft = export(atm_run, "sft", tmp_path)  # closed_book_ratio=0: every row with its documents
    assert sft.column_names == ["id", "messages"] and len(sft) == 3
    for row in sft:
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        assert "Documents:" in row["messages"][1]["content"] and row["messages"][2]["content"] == "Paris"


def test_sft_mix_follows_closed_book_ratio(tmp_path: Path, openai_server: Any) -> None:
    run_rows(tmp_path, openai_server, ROWS, n_fabrications=2, closed_book_ratio=1.0)
    sft = export(tmp_path / "run", "sft", tmp_path)
    assert len(sft) == 3
    for row in sft:
        assert "Documents:" not in row["messages"][1]["content"]
        assert "from your own knowledge" in row["messages"][0]["content"]


def test_one_fabrication_gives_a_typed_empty_dpo_export(tmp_path: Path, openai_server: Any) -> None:
    import pyarrow.parquet as pq
    from datasets import Dataset

    run_rows(tmp_path, openai_server, ROWS[:1], n_fabrications=1)
    result = export_run(tmp_path / "run", GRAPH, "atm-dpo", tmp_path / "dpo")
    assert result.rows == 0 and "needs -O n_fabrications >= 2" in result.describe()
    # datasets.load_dataset refuses a 0-row split; the parquet table is typed and datasets wraps it
    (data,) = (tmp_path / "dpo").rglob("*.parquet")
    empty = Dataset(pq.read_table(data))
    assert len(empty) == 0 and empty.column_names == ["id", "prompt", "chosen", "rejected"]
    assert empty.features == GRAPH.exports["atm-dpo"].features()
    assert len(export(tmp_path / "run", "mito", tmp_path)) == 1  # the other formats still have the row


def test_atm_dpo_trains_with_trl(atm_run: Path, tmp_path: Path) -> None:
    import copy

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from tests.tiny import build_tiny_model

    dataset = export(atm_run, "atm-dpo", tmp_path).remove_columns("id")
    texts = [m["content"] for row in dataset for k in ("prompt", "chosen", "rejected") for m in row[k]]
    model_dir = build_tiny_model(tmp_path / "tiny", [*texts, "### System ### User ### Assistant"])
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    trainer = DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        train_dataset=dataset,
        args=DPOConfig(
            output_dir=str(tmp_path / "out"),
            max_steps=2,
            per_device_train_batch_size=2,
            beta=0.2,  # the paper's attacker DPO beta
            report_to=[],
            use_cpu=True,
            save_strategy="no",
        ),
    )
    assert trainer.train().global_step == 2


def test_synth_run_atm_and_export_through_the_cli(tmp_path: Path, openai_server: Any) -> None:
    from typer.testing import CliRunner

    from synth.cli import app

    openai_server.script(AtmScript())
    seeds = write_jsonl(tmp_path / "seeds.jsonl", ROWS[:2])
    runner = CliRunner()
    run = ["run", "atm", "-i", str(seeds), "-o", str(tmp_path / "run"), "-O", "n_fabrications=2"]
    done = runner.invoke(app, [*run, "-m", spec(openai_server)])
    assert done.exit_code == 0, done.output
    exported = runner.invoke(
        app, ["export", str(tmp_path / "run"), "-f", "atm-dpo", "-o", str(tmp_path / "dpo")]
    )
    assert exported.exit_code == 0, exported.output
    assert len(load_dataset(str(tmp_path / "dpo"), split="train")) == 2
    refused = runner.invoke(app, [*run, "-m", spec(openai_server, False), "--new"])
    assert isinstance(refused.exception, SynthError)  # `synth` prints it and exits with status 2
    message = " ".join(str(refused.exception).split())
    assert "role 'generator'" in message and "?logprobs=vllm" in message


def test_misled_answers_become_corrections_and_rl_rows(atm_run: Path, tmp_path: Path) -> None:
    """The generator says "Lyon" under attack: each row yields a correction to the gold "Paris"."""
    corrections = export(atm_run, "corrections", tmp_path)
    assert corrections.column_names == ["id", "prompt", "completion"] and len(corrections) == 3
    for row in corrections:
        roles = [m["role"] for m in row["prompt"]]
        assert roles == ["system", "user", "assistant", "user"]
        assert "FAKE" in row["prompt"][1]["content"]  # the attacked context
        assert row["prompt"][2]["content"] == "Lyon" and row["completion"][0]["content"] == "Paris"
    rl = export(atm_run, "rl", tmp_path)
    assert len(rl) == 3 and all(r["answers"] == ["Paris"] and r["reference"] == "Paris" for r in rl)
