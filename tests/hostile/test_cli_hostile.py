"""CLI typos and nonsense values: refused up front, with the flag, the value and the fix; no folder made."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.engine.session import RunRequest, run_session
from synth.errors import OptionError, SynthError
from synth.registry import load_graph
from tests.hostile.support import echo_graph, seeds

MODEL = "openai:m@http://127.0.0.1:9/v1"  # nothing listens: every test here must fail before any call


def _run(tmp_path: Path, *args: str) -> Any:
    return CliRunner().invoke(
        app,
        ["run", "coevol", "-i", str(seeds(tmp_path / "s.jsonl", ["q"])), "-o", str(tmp_path / "run"),
         "-m", MODEL, *args],
    )  # fmt: skip


def test_a_typo_in_a_per_role_model_is_refused_with_the_roles_and_a_did_you_mean(tmp_path: Path) -> None:
    outcome = _run(tmp_path, "-m", "judgee=" + MODEL)
    assert isinstance(outcome.exception, SynthError)
    message = str(outcome.exception)
    assert "graph 'coevol' has no role 'judgee' (did you mean 'judge'?)" in message
    assert "responder, positive_debater, critical_debater, advisor, editor, judge" in message
    assert not (tmp_path / "run").exists()


def test_a_per_role_model_of_a_yaml_graph_checks_its_roles(tmp_path: Path) -> None:
    request = RunRequest(
        graph=str(echo_graph(tmp_path)),
        input=seeds(tmp_path / "s.jsonl", ["q"]),
        out=tmp_path / "run",
        models={"default": MODEL, "answerr": MODEL},
    )
    with pytest.raises(SynthError, match=r"no role 'answerr' \(did you mean 'answerer'\?\)"):
        asyncio.run(run_session(request))


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("max_rounds=banana", "--option max_rounds='banana': graph 'coevol' option max_rounds takes "
         "an integer "
         "(default 3), got str"),
        ("max_rounds=true", "option max_rounds takes an integer (default 3), got bool"),
        ("max_rounds=2.5", "option max_rounds takes an integer (default 3), got float"),
        ("judge_mode=[1, 2]", "option judge_mode takes text (default 'auto'), got list"),
    ],
)  # fmt: skip
def test_an_option_of_the_wrong_type_is_an_option_error(tmp_path: Path, option: str, expected: str) -> None:
    outcome = _run(tmp_path, "--option", option)
    assert isinstance(outcome.exception, OptionError), outcome.output
    assert expected in str(outcome.exception)
    assert not (tmp_path / "run").exists()


def test_option_types_follow_the_defaults() -> None:
    atm = load_graph("atm")
    assert atm.resolve_options({"temperature": 1, "top_k": 5, "corpus": "c.jsonl"})["temperature"] == 1
    with pytest.raises(OptionError, match="option top_k takes an integer"):
        atm.resolve_options({"top_k": "5x"})


@pytest.mark.parametrize(
    "args",
    [["--limit", "-1"], ["--limit", "0"], ["--max-calls", "0"], ["--concurrency", "0"], ["--timeout", "0"],
     ["--retries", "-1"], ["--max-field-bytes", "0"], ["--ray-actors", "0"]],
)  # fmt: skip
def test_non_positive_numbers_are_refused_naming_the_flag(tmp_path: Path, args: list[str]) -> None:
    outcome = _run(tmp_path, *args)
    assert outcome.exit_code == 2 and f"Invalid value for '{args[0]}'" in outcome.output
    assert not (tmp_path / "run").exists()


def test_the_request_refuses_them_too(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="limit"):
        RunRequest(graph="coevol", input=tmp_path, out=tmp_path, limit=-1)
    with pytest.raises(ValueError, match="max_calls"):
        RunRequest(graph="coevol", input=tmp_path, out=tmp_path, max_calls=0)


def test_a_run_stopped_by_a_bad_option_value_does_not_block_the_corrected_one(tmp_path: Path) -> None:
    """The value is refused by the graph itself (max_rounds=0: an int, but not >= 1) after the folder was
    opened; with no record stored the folder has nothing to protect, so the corrected command runs."""
    first = _run(tmp_path, "--option", "max_rounds=0", "--retries", "0")
    assert "max_rounds must be >= 1" in str(first.exception)
    second = _run(tmp_path, "--option", "max_rounds=2", "--retries", "0")
    assert second.exception is None or isinstance(second.exception, SystemExit), second.output
    assert "another configuration" not in second.output
