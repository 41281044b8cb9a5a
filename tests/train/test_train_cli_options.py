"""`synth train <method>`: each command's options (flags, order, defaults, help) and the config keys they set.

The commands are built from one factory (synth/cli/train.py); the expectations below are written out by
hand from the commands as they were written one by one, so a factory change that drops, reorders or
rewords an option, or sends a flag to another config key, fails here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from synth.cli import train as cli_train
from synth.cli.train import train_app

SHARED_HELP = {
    "--config": "YAML config (keys: docs/training.md).",
    "--set": "Override a config key: KEY=VALUE (lora.r=8); repeatable.",
    "--model": "Base model: HF folder, hub id, or gemma-3-270m.",
    "--output-dir": "Run folder (re-running resumes).",
    "--max-steps": "Stop after N optimizer steps (overrides epochs).",
    "--epochs": "Training epochs.",
    "--lr": "Learning rate.",
    "--precision": "auto | bf16 | fp16 | fp32.",
    "--tuning": "lora | qlora | full.",
    "--merge": "Also save the adapter merged into the base.",
    "--limit": "Train on the first N rows only.",
    "--dry-run": "Print the resolved plan and exit.",
    "--fresh": "Delete this run folder's previous run and start over.",
}
HEAD = ["--config", "--set", "--model"]
TAIL = [
    "--output-dir", "--max-steps", "--epochs", "--lr", "--precision", "--tuning", "--merge", "--limit",
    "--dry-run", "--fresh",
]  # fmt: skip
PREFERENCES = "Preference dataset folder (`synth export -f dpo`)."
RL_DATA = "Prompt dataset (`synth export -f rl`): prompt + answers."

#: method -> (its help, its options in --help order, the help of each option that is not SHARED_HELP's)
COMMANDS: dict[str, tuple[str, list[str], dict[str, str]]] = {
    "sft": (
        "Supervised fine-tuning; loss only on assistant/completion tokens (never on prompts or passages).",
        [*HEAD, "--data", *TAIL],
        {"--data": "Dataset folder from `synth export` (messages or prompt/completion)."},
    ),
    "dpo": (
        "Direct preference optimisation; with LoRA the reference is the base with the adapter off.",
        [*HEAD, "--data", "--output-dir", "--beta", *TAIL[1:]],
        {"--data": PREFERENCES, "--beta": "DPO beta (strength of the KL anchor)."},
    ),
    "hybrid": (
        "Two stages in one command: SFT, merge, then DPO (eto) or SFT (smart) with a new LoRA on the merge.",
        ["--config", "--set", "--recipe", "--stage1-data", "--stage2-data", "--model", *TAIL],
        {
            "--recipe": "eto: SFT then DPO; smart: SFT on short, then on long.",
            "--stage1-data": "Stage 1 dataset (SFT; SMART: sft-short).",
            "--stage2-data": "Stage 2 dataset (eto: dpo; SMART: sft-long).",
        },
    ),
    "reward": (
        "Reward model (one-output classification head) on preference pairs, for grpo/ppo rewards.",
        [*HEAD, "--data", *TAIL],
        {"--data": PREFERENCES},
    ),
    "grpo": (
        "GRPO with weighted rewards: exact match / F1 on gold answers, a judge role, a reward model.",
        [*HEAD, "--data", "--reward", "--num-generations", "--max-completion-length", "--beta", *TAIL],
        {
            "--data": RL_DATA,
            "--reward": "KIND[:WEIGHT][=MODEL]: exact_match, f1, judge=MODEL_SPEC, model=REWARD_RUN; "
            "repeatable (grpo).",
            "--num-generations": "Completions per prompt (the group).",
            "--max-completion-length": "Tokens per completion.",
            "--beta": "KL coefficient (0: no reference model).",
        },
    ),
    "ppo": (
        "Actor-critic PPO (TRL 1.12; runs in the PPO environment: `make venv-ppo`).",
        [*HEAD, "--data", "--reward", "--value-model", *TAIL],
        {
            "--data": RL_DATA,
            "--reward": "exact_match, f1 or model=REWARD_RUN (one reward; default exact_match).",
            "--value-model": "Critic init (default: reward model, else base).",
        },
    ),
    "mito": (
        "ATM's MITO: CE on the clean context + beta * token KL between attacked and clean contexts.",
        [*HEAD, "--data", "--beta", *TAIL],
        {
            "--data": "MITO dataset: prompt (clean), adv_prompt (attacked), answer.",
            "--beta": "Weight of KL(attacked || clean) on answer tokens.",
        },
    ),
    "atm": (
        "ATM end to end: synthesize with the attacker, rank by generator NLL, attacker DPO, generator MITO.",
        [
            *HEAD,
            "--attacker",
            "--attacker-spec",
            "--data",
            "--eval-data",
            "--iterations",
            "--initial-sft",
            "--eval-limit",
            *[flag for flag in TAIL if flag != "--merge"],
        ],
        {
            "--model": "The generator's starting weights (folder or name).",
            "--attacker": "The attacker's starting weights (default: --model).",
            "--attacker-spec": "A model spec serving the starting attacker (default local:ATTACKER).",
            "--data": "ATM seeds .jsonl (question, answers, passage/ctxs) to synthesize on.",
            "--eval-data": "Held-out QA .jsonl (disjoint from --data) for EM under attack.",
            "--iterations": "ATM iterations T (raising it extends a run).",
            "--initial-sft": "Stage 0: SFT the generator on the ATM sft export.",
            "--eval-limit": "Evaluate on the first N held-out rows.",
            "--limit": "Synthesize on the first N seed rows only.",
        },
    ),
}
SHORT = {"--config": "-c", "--set": "-s", "--output-dir": "-o"}
NEGATED = {"--merge": "--no-merge", "--initial-sft": "--no-initial-sft"}
#: Repeatable options (ppo's --reward takes one reward, grpo's several).
LISTS = {name: {"--set", "--reward"} if name == "grpo" else {"--set"} for name in COMMANDS}


def click_command(name: str) -> Any:
    return typer.main.get_command(train_app).commands[name]  # type: ignore[attr-defined]


def test_the_methods_are_the_commands() -> None:
    assert list(typer.main.get_command(train_app).commands) == list(COMMANDS)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_keeps_its_options_defaults_and_help(name: str) -> None:
    doc, flags, own_help = COMMANDS[name]
    command = click_command(name)
    assert command.help == doc
    options = [p for p in command.params if p.opts[0] != "--help"]
    assert [p.opts[0] for p in options] == flags
    for option in options:
        flag = option.opts[0]
        assert option.help == own_help.get(flag, SHARED_HELP.get(flag)), flag
        assert option.opts[1:] == ([SHORT[flag]] if flag in SHORT else []), flag
        assert option.secondary_opts == ([NEGATED[flag]] if flag in NEGATED else []), flag
        # a flag not given is None (the config decides), a repeatable one empty, a switch off
        expected = [] if flag in LISTS[name] else False if flag in ("--dry-run", "--fresh") else None
        assert option.default == expected and option.multiple == (flag in LISTS[name]), flag
    text = CliRunner().invoke(train_app, [name, "--help"], env={"COLUMNS": "200"}).output
    assert doc in text and all(flag in text for flag in flags)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Each command's (runner, settings) reaches a recorder instead of training."""
    calls: list[dict[str, Any]] = []

    def record(path: str) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            calls.append({"path": path, "args": args, "kwargs": kwargs})
            return [] if path.endswith("run_atm_loop") else None

        return run

    monkeypatch.setattr(cli_train, "_function", record)
    return calls


def overrides_of(name: str, args: list[str]) -> dict[str, Any]:
    """The overrides ``synth train NAME ARGS`` hands to its settings loader (config file: none)."""
    seen: dict[str, Any] = {}

    def load(kind: str, config: Path | None, overrides: dict[str, Any]) -> str:
        seen.update(kind=kind, config=config, overrides=overrides)
        return "settings"

    method = next(m for m in cli_train.METHODS if m.name == name)
    app = typer.Typer()
    app.command(name)(cli_train.command(replace(method, load=load, report=print)))
    app.command("other")(lambda: None)  # two commands: typer keeps the subcommand name
    result = CliRunner().invoke(app, [name, *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert seen["kind"] == name
    return seen["overrides"]  # type: ignore[no-any-return]


COMMON_ARGS = ["--set", "lora.r=2", "--model", "m", "-o", "out", "--max-steps", "3", "--epochs", "1.5"]
COMMON_ARGS += ["--lr", "0.001", "--precision", "fp32", "--tuning", "full", "--limit", "4"]
ATM_ARGS = ["--attacker", "a", "--attacker-spec", "openai:a", "--data", "s", "--eval-data", "e"]
COMMON_KEYS = {
    "lora": {"r": 2}, "model": "m", "output_dir": "out", "max_steps": 3, "epochs": 1.5,
    "learning_rate": 0.001, "precision": "fp32", "tuning": "full", "limit": 4,
}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "args", "keys"),
    [
        ("sft", ["--data", "d", "--merge"], {"data": "d", "merge": True}),
        ("dpo", ["--data", "d", "--beta", "0.2", "--no-merge"], {"data": "d", "beta": 0.2, "merge": False}),
        (
            "hybrid",
            ["--recipe", "smart", "--stage1-data", "short", "--stage2-data", "long"],
            {"recipe": "smart", "stage1": {"data": "short"}, "stage2": {"data": "long"}},
        ),
        ("hybrid", ["--stage2-data", "long"], {"stage2": {"data": "long"}}),
        ("reward", ["--data", "d"], {"data": "d"}),
        (
            "grpo",
            ["--reward", "f1:0.5", "--reward", "judge=openai:j", "--num-generations", "4"],
            {
                "rewards": [{"kind": "f1", "weight": 0.5}, {"kind": "judge", "model": "openai:j"}],
                "num_generations": 4,
            },
        ),
        ("grpo", ["--max-completion-length", "8", "--beta", "0"], {"max_completion_length": 8, "beta": 0.0}),
        (
            "ppo",
            ["--reward", "model=rm", "--value-model", "v"],
            {"reward": {"kind": "model", "model": "rm"}, "value_model": "v"},
        ),
        ("mito", ["--data", "d", "--beta", "0.1"], {"data": "d", "beta": 0.1}),
        (
            "atm",
            [*ATM_ARGS, "--iterations", "2", "--no-initial-sft", "--eval-limit", "5"],
            {
                "attacker": "a",
                "attacker_spec": "openai:a",
                "data": "s",
                "eval_data": "e",
                "iterations": 2,
                "initial_sft": False,
                "eval_limit": 5,
            },
        ),
    ],
)
def test_flags_set_their_config_keys(
    name: str, args: list[str], keys: dict[str, Any], captured: list[Any]
) -> None:
    assert overrides_of(name, [*COMMON_ARGS, *args]) == {**COMMON_KEYS, **keys}
    run = captured[-1]
    assert (
        run["args"] == ("settings",) and run["kwargs"]["fresh"] is False and run["kwargs"]["dry_run"] is False
    )


def test_flags_not_given_set_nothing(captured: list[Any]) -> None:
    for name in COMMANDS:
        assert overrides_of(name, ["--dry-run", "--fresh"]) == {}, name
        assert captured[-1]["kwargs"]["fresh"] is True and captured[-1]["kwargs"]["dry_run"] is True
    ppo_checks = [call["path"] for call in captured if "ppo" in call["path"]]
    assert ppo_checks == ["train.ppo:require_ppo", "train.ppo:run_ppo"]  # PPO checks its environment first
