"""Actor-critic PPO with TRL 1.12 (run in `.venv-ppo`): a rule reward and a reward model + critic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.train.fixtures_rl import GOLD, rl_export
from tests.train.fixtures_train import base_settings, tiny_model
from train.config import PPOSettings
from train.data import load_rows
from train.model_setup import load_tokenizer
from train.ppo import rule_reward_model, run_ppo, tokenize_prompts
from train.runfolder import RunResult


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def ppo_settings(model: Path, data: Path, out: Path, **extra: Any) -> PPOSettings:
    return PPOSettings(
        **base_settings(model, data, out, batch_size=2, learning_rate=1e-3, **extra),
        response_length=8,
        num_ppo_epochs=1,
    )


def test_the_rule_reward_scores_rollouts_through_trls_get_reward(model_dir: Path, tmp_path: Path) -> None:
    import torch
    from trl.experimental.utils import get_reward

    tokenizer = load_tokenizer(str(model_dir))
    dataset = load_rows(rl_export(tmp_path / "rl", copies=1))
    _, query_ids = tokenize_prompts(dataset, tokenizer, max_length=256)
    module = rule_reward_model("exact_match", tokenizer, dict(zip(query_ids, GOLD, strict=True)))
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    responses = ["Shakespeare", "Michelangelo", " paris."]
    width = max(len(q) for q in query_ids)
    rows = []
    for query, text in zip(query_ids, responses, strict=True):
        response = tokenizer(text, add_special_tokens=False)["input_ids"] + [eos, pad, pad]
        rows.append(
            [pad] * (width - len(query)) + list(query) + response[:8] + [pad] * (8 - len(response[:8]))
        )
    _, scores, _ = get_reward(module, torch.tensor(rows), pad, width)
    assert scores.tolist() == [1.0, 0.0, 1.0]


def test_ppo_two_steps_with_a_rule_reward_and_lora(model_dir: Path, tmp_path: Path) -> None:
    data = rl_export(tmp_path / "rl")
    result = run_ppo(ppo_settings(model_dir, data, tmp_path / "out"), log=lambda _: None)
    assert isinstance(result, RunResult) and result.kind == "ppo" and result.global_step == 2
    assert result.train_loss is not None
    adapter = tmp_path / "out" / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "tokenizer_config.json").is_file()
    assert not list((tmp_path / "out").glob("checkpoints/checkpoint-*"))  # no resume in TRL 1.12 PPO
    again = run_ppo(ppo_settings(model_dir, data, tmp_path / "out"), log=lambda _: None)
    assert isinstance(again, RunResult) and again.status == "already complete"


def test_ppo_full_with_a_reward_model_as_reward_and_critic(model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    reward_dir = tmp_path / "rm"
    AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=1).save_pretrained(
        reward_dir
    )
    load_tokenizer(str(model_dir)).save_pretrained(reward_dir)
    data = rl_export(tmp_path / "rl")
    settings = ppo_settings(
        model_dir, data, tmp_path / "out", tuning="full", reward={"kind": "model", "model": str(reward_dir)}
    )
    result = run_ppo(settings, log=lambda _: None)
    assert isinstance(result, RunResult) and result.global_step == 2
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file()
    config = (tmp_path / "out" / "model" / "config.json").read_text()
    assert "LlamaForCausalLM" in config  # the policy is saved, not the critic


def test_ppo_dry_run_from_the_command_line(model_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from synth.cli.train import train_app

    data = rl_export(tmp_path / "rl")
    out = tmp_path / "out"
    args = ["ppo", "--model", str(model_dir), "--data", str(data), "-o", str(out), "--reward", "f1"]
    result = CliRunner().invoke(train_app, [*args, "--dry-run", "--set", "device=cpu"])
    assert result.exit_code == 0, result.output
    assert "ppo run ->" in result.output and "6 rows, prompt (conversational)" in result.output
    assert not out.exists()
