"""Exports: parquet datasets that load_dataset reads, typed even when empty, and TRL-ready."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from datasets import load_dataset
from pydantic import BaseModel

from graphs.coevol import GRAPH
from synth.dataset.export import ExportOptions, export_run
from synth.dataset.splits import parse_split
from synth.engine.store import RunStore
from synth.errors import ExportError
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
    assert result.splits == {"train": 0}
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
    with pytest.raises(ExportError, match="formats: sft, dpo, corrections, rl"):
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


def test_split_is_by_trajectory_reproducible_and_shuffle_reorders(run_dir: Path, tmp_path: Path) -> None:
    options = ExportOptions(splits={"test": 0.34}, seed=7)
    first = export_run(run_dir, GRAPH, "sft", tmp_path / "a", options)
    export_run(run_dir, GRAPH, "sft", tmp_path / "b", options)
    assert first.splits == {"train": 4, "test": 2} and first.rows == 6
    test_a = list(load_dataset(str(tmp_path / "a"), split="test")["id"])
    assert test_a == list(load_dataset(str(tmp_path / "b"), split="test")["id"])  # same seed, same draw
    train_a = list(load_dataset(str(tmp_path / "a"), split="train")["id"])
    assert sorted(train_a + test_a) == [f"t{i}" for i in range(6)] and train_a == sorted(train_a)
    other = export_run(run_dir, GRAPH, "sft", tmp_path / "c", ExportOptions(splits={"test": 2}, seed=8))
    assert other.splits == {"train": 4, "test": 2}
    shuffled = export_run(run_dir, GRAPH, "sft", tmp_path / "d", ExportOptions(shuffle=True, seed=3))
    ids = list(load_dataset(str(tmp_path / "d"), split="train")["id"])
    assert shuffled.splits == {"train": 6} and sorted(ids) == [f"t{i}" for i in range(6)]
    assert ids != sorted(ids)  # seed 3 permutes these six rows
    with pytest.raises(ExportError, match="leave no trajectory for train"):
        export_run(run_dir, GRAPH, "sft", tmp_path / "e", ExportOptions(splits={"test": 6}))


def test_rows_of_one_trajectory_never_straddle_splits(tmp_path: Path) -> None:
    """A format with several rows per trajectory (here: a user graph's) splits by trajectory."""
    from synth.dataset.formats import sft_features
    from synth.graph import ExportFormat, SynthGraph

    def rows(trajectory: Trajectory) -> list[dict[str, Any]]:
        message = [{"role": "user", "content": "x"}]
        return [{"id": f"{trajectory.id}-{k}", "messages": message} for k in range(3)]

    graph = SynthGraph(
        name="multi", description="three rows per trajectory", version="1", seed_model=BaseModel, roles=(),
        build=lambda *a, **k: None, to_trajectory=lambda state: {},
        exports={"multi": ExportFormat("multi", "3 rows each", rows, sft_features)},
    )  # fmt: skip
    folder = tmp_path / "run"
    store = RunStore(folder)
    store.write([Trajectory(id=f"t{i}", graph="multi", seed={}) for i in range(10)])
    store.write_config({**CONFIG, "graph": "multi"}, "abc")
    store.close()
    options = ExportOptions(splits={"test": 0.3}, shuffle=True)
    result = export_run(folder, graph, "multi", tmp_path / "out", options)
    assert result.splits == {"train": 21, "test": 9}
    test_ids = {i.rsplit("-", 1)[0] for i in list(load_dataset(str(tmp_path / "out"), split="test")["id"])}
    train_ids = {i.rsplit("-", 1)[0] for i in list(load_dataset(str(tmp_path / "out"), split="train")["id"])}
    assert len(test_ids) == 3 and not test_ids & train_ids


@pytest.mark.parametrize("bad", ["test", "test=0", "test=1.5", "train=0.1", "te st=0.1", "test=x"])
def test_bad_split_flags_say_how_to_write_them(bad: str) -> None:
    with pytest.raises(ExportError, match="NAME=FRACTION"):
        parse_split(bad)


def test_cli_lists_formats_and_exports_splits(run_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from synth.cli import app

    runner = CliRunner()
    for args in (["export", str(run_dir)], ["export", str(run_dir), "--list-formats"]):
        listed = runner.invoke(app, args)
        assert listed.exit_code == 0, listed.output
        for name in ("sft", "dpo", "corrections", "rl"):
            assert name in listed.output
        assert "the best answer over the worst-scored one" in listed.output
    done = runner.invoke(
        app,
        ["export", str(run_dir), "-f", "sft", "-o", str(tmp_path / "s"), "--split", "test=0.5", "--shuffle",
         "--seed", "1"],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "6 sft rows (3 train + 3 test)" in " ".join(done.output.split())
    missing = runner.invoke(app, ["export", str(run_dir), "-f", "sft"])
    assert missing.exit_code != 0 and "--out" in missing.output
