"""Exports: parquet datasets that load_dataset reads, typed even when empty, and TRL-ready."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import load_dataset

from graphs.coevol import GRAPH
from synth.errors import ExportError
from synth.export import export_run
from synth.store import RunStore
from synth.trajectory import Trajectory
from tests.tiny import build_tiny_model


def coevol_record(i: int, accepted: int, status: str = "ok") -> Trajectory:
    evolved = f"An evolved answer number {i}." if accepted else f"Original answer {i}."
    return Trajectory(
        id=f"t{i}",
        graph="coevol",
        seed={"instruction": f"Question {i}?"},
        status=status,  # type: ignore[arg-type]
        result={
            "instruction": f"Question {i}?",
            "input": "ctx" if i % 2 else "",
            "original": f"Original answer {i}.",
            "evolved": evolved,
            "accepted_rounds": accepted,
            "rounds": [],
            "stop_reason": "",
        },
    )


CONFIG = {
    "graph": "coevol",
    "graph_version": "1",
    "input": "seeds.jsonl",
    "fingerprint": "abc",
    "models": {"default": "openai:m@http://127.0.0.1:1/v1"},
    "options": {"max_rounds": 3},
}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    store = RunStore(folder)
    store.write([coevol_record(i, accepted=i % 2) for i in range(6)] + [coevol_record(9, 1, status="failed")])
    store.write_config(CONFIG, "abc")
    store.close()
    return folder


def test_sft_and_dpo_round_trip_through_load_dataset(run_dir: Path, tmp_path: Path) -> None:
    sft = export_run(run_dir, GRAPH, "sft", tmp_path / "sft")
    dpo = export_run(run_dir, GRAPH, "dpo", tmp_path / "dpo")
    assert (sft.rows, sft.trajectories, dpo.rows) == (6, 6, 3)
    sft_ds = load_dataset(str(tmp_path / "sft"), split="train")
    assert sft_ds[1]["messages"] == [
        {"role": "user", "content": "Question 1?\n\nctx"},
        {"role": "assistant", "content": "An evolved answer number 1."},
    ]
    dpo_ds = load_dataset(str(tmp_path / "dpo"), split="train")
    assert dpo_ds.column_names == ["id", "prompt", "chosen", "rejected"]
    assert dpo_ds[0]["chosen"][0]["content"].startswith("An evolved")
    assert dpo_ds[0]["rejected"][0]["content"].startswith("Original")


def test_empty_export_is_valid_and_says_why(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    store = RunStore(folder)
    store.write([coevol_record(i, accepted=0) for i in range(3)])
    store.write_config(CONFIG, "abc")
    store.close()
    result = export_run(folder, GRAPH, "dpo", tmp_path / "dpo")
    assert result.rows == 0 and "no round was accepted" in result.describe()
    # datasets' load_dataset cannot build a split of 0 examples ("corresponds to no data"); the parquet
    # file is still a typed, valid table that datasets wraps as an empty Dataset.
    import pyarrow.parquet as pq
    from datasets import Dataset

    (data_file,) = (tmp_path / "dpo" / "data").glob("*.parquet")
    table = pq.read_table(data_file)
    dataset = Dataset(table)
    assert len(dataset) == 0 and dataset.column_names == ["id", "prompt", "chosen", "rejected"]
    assert dataset.features["chosen"] == GRAPH.exports["dpo"].features()["chosen"]


def test_unknown_format_lists_the_known(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="formats: sft, dpo"):
        export_run(run_dir, GRAPH, "kto", tmp_path / "x")


def test_sft_export_trains_with_trl_for_two_steps(run_dir: Path, tmp_path: Path) -> None:
    """The SFT format is TRL-ready: SFTTrainer with assistant-only loss runs on it as exported."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    export_run(run_dir, GRAPH, "sft", tmp_path / "sft")
    dataset = load_dataset(str(tmp_path / "sft"), split="train").remove_columns("id")
    corpus = [m["content"] for row in dataset for m in row["messages"]] + ["### User ### Assistant"]
    model_dir = build_tiny_model(tmp_path / "tiny", corpus)
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        train_dataset=dataset,
        args=SFTConfig(
            output_dir=str(tmp_path / "out"),
            max_steps=2,
            per_device_train_batch_size=2,
            assistant_only_loss=True,
            report_to=[],
            use_cpu=True,
            logging_steps=1,
            save_strategy="no",
        ),
    )
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss > 0


def test_export_writes_a_dataset_card_with_hub_front_matter(run_dir: Path, tmp_path: Path) -> None:
    import yaml

    store = RunStore(run_dir)
    store.write_config(
        {
            "graph": "coevol",
            "graph_version": "1",
            "input": "seeds.jsonl",
            "models": {"default": "openai:m@http://127.0.0.1:1/v1"},
            "options": {"max_rounds": 3},
            "fingerprint": "abc",
        },
        "abc",
    )
    store.close()
    export_run(run_dir, GRAPH, "dpo", tmp_path / "dpo")
    card = (tmp_path / "dpo" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    (data_path,) = [p.relative_to(tmp_path / "dpo").as_posix() for p in (tmp_path / "dpo").glob("data/*")]
    assert front["configs"][0]["data_files"][0]["path"] == data_path
    assert front["size_categories"] == ["n<1K"] and "synthetic" in front["tags"]
    assert {"license", "language", "task_categories"} <= set(front)
    assert "`judge`: `" in card and "failed 1, ok 6" in card and "Rows in this export: 3" in card
    assert '"chosen"' in card  # a sample record
    assert load_dataset(str(tmp_path / "dpo"), split="train").num_rows == 3
