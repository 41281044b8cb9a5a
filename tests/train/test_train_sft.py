"""LoRA SFT on a tiny offline model: loss masks (SMART long and short shapes), artifacts, dry run, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from synth.cli.train import train_app
from tests.train.fixtures_train import (
    ANSWER,
    PASSAGE,
    QUERIES,
    VERDICT,
    base_settings,
    smart_long_row,
    smart_short_row,
    tiny_model,
    write_dataset,
    write_jsonl,
)
from train.config import SFTSettings
from train.eval import run_qa_eval
from train.job import build_plan
from train.model_setup import load_tokenizer
from train.runfolder import RunResult
from train.sft import build_sft_trainer, run_sft


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def trained_runs(trainer: Any, row: int = 0) -> list[str]:
    """The text of each contiguous run of tokens whose label is not -100 (what the loss sees)."""
    example = trainer.train_dataset[row]
    tokenizer = trainer.processing_class
    runs: list[list[int]] = []
    previous = -100
    for token, label in zip(example["input_ids"], example["labels"], strict=True):
        if label != -100:
            if previous == -100:
                runs.append([])
            runs[-1].append(token)
        previous = label
    return [tokenizer.decode(run, skip_special_tokens=False) for run in runs]


def build_trainer(settings: SFTSettings) -> Any:
    _, job = build_plan("sft", settings)
    job.tokenizer = load_tokenizer(job.base)
    return build_sft_trainer(job)


def test_smart_long_trains_only_on_assistant_turns(model_dir: Path, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "long", [smart_long_row(i) for i in range(4)])
    trainer = build_trainer(SFTSettings(**base_settings(model_dir, data, tmp_path / "inspect")))
    eos = trainer.processing_class.eos_token
    runs = trained_runs(trainer)
    # Exactly the two assistant segments, each with its end-of-turn token; nothing else.
    assert runs == [QUERIES + eos, ANSWER + eos]
    trained = "".join(runs)
    assert PASSAGE not in trained and "Who wrote Hamlet" not in trained and "###" not in trained
    # And the passage / user tokens are present in the input, labelled -100.
    text = trainer.processing_class.decode(trainer.train_dataset[0]["input_ids"])
    assert PASSAGE in text and "### Retrieval\n" in text and "### Intent Reconstructor\n" in text

    result = run_sft(SFTSettings(**base_settings(model_dir, data, tmp_path / "out")), log=lambda _: None)
    assert isinstance(result, RunResult) and result.global_step == 2 and result.status == "trained"
    out = tmp_path / "out"
    for name in ("config.yaml", "data_fingerprint.json", "plan.json", "result.json"):
        assert (out / name).is_file(), name
    adapter = out / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    tokenizer_config = json.loads((adapter / "tokenizer_config.json").read_text())
    chat_template = (
        (adapter / "chat_template.jinja").read_text() if (adapter / "chat_template.jinja").exists() else ""
    )
    assert "generation" in (tokenizer_config.get("chat_template") or chat_template)
    fingerprint = json.loads((out / "data_fingerprint.json").read_text())
    assert fingerprint["rows"] == 4 and len(fingerprint["sha256"]) == 64

    # The run folder is directly evaluable: its adapter is loaded on its base and merged for generation.
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"question": "Who wrote Hamlet?", "answers": ["Shakespeare"]}])
    summary = run_qa_eval(str(out), qa, out=tmp_path / "eval", max_new_tokens=2)
    assert summary["rows"] == 1 and summary["model_folder"] == str(adapter)


def test_smart_short_prompt_completion_trains_only_the_segment(model_dir: Path, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "short", [smart_short_row(i) for i in range(2)])
    trainer = build_trainer(SFTSettings(**base_settings(model_dir, data, tmp_path / "out")))
    eos = trainer.processing_class.eos_token
    assert trained_runs(trainer) == [VERDICT + eos]
    text = trainer.processing_class.decode(trainer.train_dataset[0]["input_ids"])
    assert "### Fact Locator\n" + VERDICT in text  # the per-row assistant_header reached the template


def test_dry_run_prints_the_plan_and_writes_nothing(model_dir: Path, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "long", [smart_long_row(i) for i in range(3)])
    out = tmp_path / "out"
    args = ["sft", "--model", str(model_dir), "--data", str(data), "-o", str(out), "--dry-run"]
    result = CliRunner().invoke(train_app, [*args, "--set", "lora.r=2", "--set", "device=cpu"])
    assert result.exit_code == 0, result.output
    assert "3 rows, messages (conversational)" in result.output
    from synth.models.local.hardware import cpu_supports_bf16

    precision = "bf16" if cpu_supports_bf16() else "fp32"  # auto: bf16 on CPUs with AMX / avx512_bf16
    assert f"precision {precision}, tuning lora" in result.output and "trainable of" in result.output
    assert not out.exists()


def test_wrong_dataset_format_says_what_is_needed(model_dir: Path, tmp_path: Path) -> None:
    from train.errors import TrainError

    data = write_dataset(tmp_path / "odd", [{"id": "1", "question": "q", "answer": "a"}])
    with pytest.raises(TrainError, match=r"cannot use; it needs a `messages` export"):
        run_sft(SFTSettings(**base_settings(model_dir, data, tmp_path / "out")), dry_run=True)
