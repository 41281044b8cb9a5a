"""GRPO on a SMART `rl` export with weighted rewards: rules, a reward model, and a judge role that is
scored over real HTTP by the loopback OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from synth.cli.train import _reward_sources, train_app
from synth.testing.replies import by_substring
from tests.train.fixtures_rl import GOLD, QUESTIONS, rl_export
from tests.train.fixtures_train import base_settings, tiny_model, write_dataset
from train.config import ConfigError, GRPOSettings, RewardSource
from train.errors import TrainError
from train.grpo import run_grpo
from train.reward_sources import JudgeReward, RuleReward
from train.runfolder import RunResult


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


class Logs:
    """A TrainerCallback keeping every logged dict."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        self.entries: list[dict[str, float]] = []
        outer = self

        class Keep(TrainerCallback):
            def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
                outer.entries.append(dict(logs or {}))

        self.callback = Keep()

    def values(self, key: str) -> list[float]:
        return [entry[key] for entry in self.entries if key in entry]


def grpo_settings(model: Path, data: Path, out: Path, rewards: list[dict[str, Any]]) -> GRPOSettings:
    return GRPOSettings(
        **base_settings(model, data, out, batch_size=4, learning_rate=1e-3),
        rewards=rewards,
        num_generations=4,
        max_completion_length=8,
    )


def test_rule_rewards_score_the_answer_against_gold() -> None:
    completions = [
        [{"role": "assistant", "content": '{"answer": "William Shakespeare", "citations": ["p1"]}'}],
        [{"role": "assistant", "content": "shakespeare.\nHe wrote it around 1600."}],
        [{"role": "assistant", "content": "Christopher Marlowe"}],
        [{"role": "assistant", "content": "William"}],
        [{"role": "assistant", "content": "Paris"}],
    ]
    answers: list[Any] = [GOLD[0], GOLD[0], GOLD[0], ["William Shakespeare"], []]
    prompts = [[{"role": "user", "content": "q"}]] * 5
    assert RuleReward("exact_match")(prompts, completions, answers=answers) == [1.0, 1.0, 0.0, 0.0, None]
    f1 = RuleReward("f1")(prompts, completions, answers=answers)
    assert f1[:3] == [1.0, 1.0, 0.0] and f1[3] == pytest.approx(2 / 3) and f1[4] is None
    with pytest.raises(TrainError, match=r"needs gold answers in a 'gold' column.*synth export RUN -f rl"):
        RuleReward("exact_match", answers_field="gold")(prompts, completions, answers=answers)


def test_judge_reward_parses_scores_from_the_structured_output(openai_server: Any) -> None:
    openai_server.script(
        by_substring(
            {
                "[Response]\nShakespeare": json.dumps({"reason": "matches the reference", "score": 9}),
                "[Response]\nMarlowe": json.dumps({"reason": "contradicts the reference", "score": 1}),
            },
            default="I would rather not say",  # not JSON: the repair turn fails too -> no score
        )
    )
    judge = JudgeReward(RewardSource(kind="judge", model=f"openai:mock@{openai_server.base_url}", retries=0))
    prompts = [[{"role": "user", "content": "Who wrote Hamlet?"}]] * 3
    completions = [[{"role": "assistant", "content": text}] for text in ("Shakespeare", "Marlowe", "???")]
    rewards = asyncio.run(judge.score(prompts, completions, answers=[GOLD[0]] * 3))
    assert rewards == [0.9, 0.1, None]
    requests = openai_server.requests
    assert len(requests) == 4  # 3 judgements + 1 repair turn for the unparseable one
    first = json.dumps(requests[0])
    assert "Reference answers: William Shakespeare | Shakespeare" in first and "Who wrote Hamlet?" in first


def test_grpo_with_rule_rewards_and_a_reward_model(model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    reward_dir = tmp_path / "rm"
    AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=1).save_pretrained(
        reward_dir
    )
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(reward_dir)
    data = rl_export(tmp_path / "rl")
    rewards = [
        {"kind": "exact_match"},
        {"kind": "f1", "weight": 0.5},
        {"kind": "model", "model": str(reward_dir)},
    ]
    logs = Logs()
    settings = grpo_settings(model_dir, data, tmp_path / "out", rewards)
    result = run_grpo(settings, callbacks=[logs.callback], log=lambda _: None)
    assert isinstance(result, RunResult) and result.kind == "grpo" and result.global_step == 2
    assert (tmp_path / "out" / "adapter" / "adapter_config.json").is_file()
    exact, f1, model = (logs.values(f"rewards/{name}/mean") for name in ("exact_match", "f1", "rm"))
    assert len(exact) == len(f1) == len(model) == 2
    assert all(0.0 <= value <= 1.0 for value in exact + f1)
    # The logged total is the weighted sum of the sources.
    for total, e, f, m in zip(logs.values("reward"), exact, f1, model, strict=True):
        assert total == pytest.approx(e + 0.5 * f + m, abs=1e-4)


def test_grpo_with_a_scripted_judge_over_the_loopback_server(
    model_dir: Path, tmp_path: Path, openai_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai_server.script(json.dumps({"reason": "plausible", "score": 7}))
    closed: list[tuple[str, bool]] = []  # (the thread it ran in, whether the judge had a client to close)
    close = JudgeReward.aclose

    async def recorded_close(judge: JudgeReward) -> None:
        closed.append((threading.current_thread().name, judge._client is not None))
        await close(judge)
        assert judge._client is None

    monkeypatch.setattr(JudgeReward, "aclose", recorded_close)
    data = rl_export(tmp_path / "rl")
    judge = {"kind": "judge", "weight": 0.5, "model": f"openai:mock-judge@{openai_server.base_url}"}
    logs = Logs()
    settings = grpo_settings(model_dir, data, tmp_path / "out", [{"kind": "exact_match"}, judge])
    result = run_grpo(settings, callbacks=[logs.callback], log=lambda _: None)
    assert isinstance(result, RunResult) and result.global_step == 2
    assert logs.values("rewards/judge/mean") == pytest.approx([0.7, 0.7])
    for total, exact in zip(logs.values("reward"), logs.values("rewards/exact_match/mean"), strict=True):
        assert total == pytest.approx(exact + 0.5 * 0.7, abs=1e-4)
    # One judge call per completion: 2 steps x 4 completions, each about one of the export's questions.
    requests = openai_server.requests
    assert len(requests) == 8
    assert all(any(q in json.dumps(r) for q in QUESTIONS) for r in requests)
    # Training over, the judge's client was closed once, in the reward loop that made its calls (TRL's,
    # which runs until exit): its connection pool is not left open for the rest of the process.
    assert len(closed) == 1 and closed[0][1] is True
    assert closed[0][0] != threading.main_thread().name


def test_grpo_cli_reward_flags_and_missing_answers(model_dir: Path, tmp_path: Path) -> None:
    assert _reward_sources(["exact_match", "f1:0.5", "judge:2=openai:m@http://127.0.0.1:9/v1"]) == [
        {"kind": "exact_match"},
        {"kind": "f1", "weight": 0.5},
        {"kind": "judge", "weight": 2.0, "model": "openai:m@http://127.0.0.1:9/v1"},
    ]
    with pytest.raises(ConfigError, match="weight 'x' is not a number"):
        _reward_sources(["f1:x"])
    data = rl_export(tmp_path / "rl")
    out = tmp_path / "out"
    args = ["grpo", "--model", str(model_dir), "--data", str(data), "-o", str(out), "--dry-run"]
    result = CliRunner().invoke(train_app, [*args, "--reward", "f1", "--set", "device=cpu"])
    assert result.exit_code == 0, result.output
    assert "grpo run ->" in result.output and "6 rows, prompt (conversational)" in result.output

    no_gold = write_dataset(tmp_path / "prompts", [{"prompt": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(TrainError, match="reward exact_match needs gold answers in a 'answers' column"):
        run_grpo(grpo_settings(model_dir, no_gold, out, [{"kind": "exact_match"}]), dry_run=True)
    with pytest.raises(ValueError, match="a judge reward needs model"):
        RewardSource(kind="judge")
