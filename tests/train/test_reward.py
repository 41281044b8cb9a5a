"""Reward models with TRL's RewardTrainer on `dpo`-shaped preference pairs: LoRA and full, chat and plain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from synth.cli.train import train_app
from tests.train.fixtures_train import base_settings, dpo_row, tiny_model, write_dataset
from train.config import RewardSettings
from train.errors import TrainError
from train.reward_model import run_reward
from train.reward_sources import load_reward_model
from train.runfolder import RunResult


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def reward_of(model: Any, tokenizer: Any, messages: list[dict[str, str]]) -> float:
    """The scalar reward of one conversation, rendered with the chat template as GRPO renders it."""
    import torch

    text = tokenizer.apply_chat_template(messages, tokenize=False)
    batch = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        return float(model(**batch).logits[0, 0])


def test_lora_reward_model_learns_the_preference_and_loads_back(model_dir: Path, tmp_path: Path) -> None:
    rows = [dpo_row(i) for i in range(4)]
    data = write_dataset(tmp_path / "dpo", rows)
    settings = RewardSettings(
        **base_settings(model_dir, data, tmp_path / "rm", max_steps=8, learning_rate=5e-3, merge=True)
    )
    result = run_reward(settings, log=lambda _: None)
    assert isinstance(result, RunResult) and result.kind == "reward" and result.global_step == 8
    adapter = tmp_path / "rm" / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and "score" in str(config["modules_to_save"])
    merged = json.loads((tmp_path / "rm" / "merged" / "config.json").read_text())
    assert merged["architectures"] == ["LlamaForSequenceClassification"] and len(merged["id2label"]) == 1

    # Loaded back from the run folder (merged) and from the adapter alone: the same scores, and the
    # chosen answer of every training pair now scores higher than the rejected one.
    model, tokenizer = load_reward_model(str(tmp_path / "rm"))
    from_adapter, _ = load_reward_model(str(adapter))
    for row in rows:
        chosen = reward_of(model, tokenizer, row["prompt"] + row["chosen"])
        rejected = reward_of(model, tokenizer, row["prompt"] + row["rejected"])
        assert chosen > rejected
        again = reward_of(from_adapter, tokenizer, row["prompt"] + row["chosen"])
        assert again == pytest.approx(chosen, abs=1e-4)


def test_full_reward_model_on_plain_string_pairs(model_dir: Path, tmp_path: Path) -> None:
    rows = [
        {"prompt": f"Name a colour ({i}).", "chosen": " Red.", "rejected": " I cannot answer that."}
        for i in range(4)
    ]
    data = write_dataset(tmp_path / "plain", rows)
    settings = RewardSettings(**base_settings(model_dir, data, tmp_path / "rm", tuning="full"))
    result = run_reward(settings, log=lambda _: None)
    assert isinstance(result, RunResult) and result.global_step == 2 and result.train_loss is not None
    assert result.model == str(tmp_path / "rm" / "model")
    model, _ = load_reward_model(str(tmp_path / "rm"))
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert not any(p.requires_grad for p in model.parameters())


def test_a_causal_lm_is_not_taken_for_a_reward_model(model_dir: Path) -> None:
    with pytest.raises(TrainError, match=r"is not a reward model.*synth train reward"):
        load_reward_model(str(model_dir))


def test_reward_dry_run_and_wrong_data(model_dir: Path, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "dpo", [dpo_row(i) for i in range(3)])
    out = tmp_path / "out"
    args = ["reward", "--model", str(model_dir), "--data", str(data), "-o", str(out), "--dry-run"]
    result = CliRunner().invoke(train_app, [*args, "--set", "device=cpu"])
    assert result.exit_code == 0, result.output
    assert "reward run ->" in result.output and "3 rows, preference (conversational)" in result.output
    assert not out.exists()

    sft = write_dataset(tmp_path / "sft", [{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(TrainError, match="cannot use; it needs a preference export"):
        run_reward(RewardSettings(**base_settings(model_dir, sft, out)), dry_run=True)
