"""``synth train atm``: one ATM iteration end to end on 2 questions — the scripted attacker over the loopback
server, a tiny generator ranking fabrications by its own NLL, attacker DPO, generator MITO, EM under
attack on 2 held-out questions — and resuming it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from roles.atm import ATTACKER, GENERATOR, generator_inputs
from synth.cli.train import train_app
from synth.engine.store import RunStore
from tests.atm_script import AtmScript
from tests.tiny import build_tiny_model
from train.atm_config import AtmSettings, load_atm_settings
from train.atm_loop import run_atm_loop
from train.config import ConfigError
from train.errors import TrainError

TRAIN = [
    {"question": "capital of france", "answers": ["Paris"], "passage": "Paris is the capital of France."},
    {"question": "who wrote hamlet", "answers": ["Shakespeare"], "passage": "Shakespeare wrote Hamlet."},
]
HELD_OUT = [
    {"question": "largest planet", "answers": ["Jupiter"], "passage": "Jupiter is the largest planet."},
    {"question": "river of paris", "answers": ["Seine"], "passage": "The Seine flows through Paris."},
]


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTH_CACHE", str(tmp_path / "cache"))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def tiny(folder: Path) -> Path:
    """A tiny model whose tokenizer learned the ATM prompts (so they fit its 512-token context)."""
    docs = [{"title": "Fabricated 0", "text": "Lyon is the capital of France, FAKE0 records say. LP=-1.0"}]
    texts = [*GENERATOR.render(**generator_inputs("capital of france", docs)), ATTACKER.instructions]
    texts += [json.dumps(r) for r in TRAIN + HELD_OUT] + ["### System\n### User\n### Assistant\n"]
    return build_tiny_model(folder, texts)


def config(tmp_path: Path, server: Any, **extra: Any) -> dict[str, Any]:
    model = str(tiny(tmp_path / "tiny"))
    return {
        "model": model,
        "attacker": model,
        "attacker_spec": f"openai:scripted@{server.base_url}",
        "data": write_jsonl(tmp_path / "train.jsonl", TRAIN),
        "eval_data": write_jsonl(tmp_path / "held_out.jsonl", HELD_OUT),
        "output_dir": str(tmp_path / "atm"),
        "atm": {"n_fabrications": 2},
        "run": {"concurrency": 2},
        "eval": {"max_new_tokens": 3},
        "max_steps": 2,
        "batch_size": 2,
        "save_steps": 1,
        "logging_steps": 1,
        "learning_rate": 1e-2,
        "warmup": 0,
        "max_length": 512,
        "lora": {"r": 4, "alpha": 8},
        "device": "cpu",
        **extra,
    }


def attacker_calls(server: Any) -> int:
    return sum("You are the Attacker" in r["messages"][0]["content"] for r in server.requests)


def test_one_atm_iteration_end_to_end_and_resume(tmp_path: Path, openai_server: Any) -> None:
    openai_server.script(AtmScript())
    settings = AtmSettings.model_validate(config(tmp_path, openai_server))
    summary = run_atm_loop(settings, log=lambda _: None)
    assert isinstance(summary, dict)
    out = tmp_path / "atm"
    # 2 fabrications for each of 2 training and 2 held-out questions
    assert attacker_calls(openai_server) == 8

    run = RunStore(out / "iteration_1" / "run")
    assert run.counts() == {"ok": 2}
    models = run.read_config()["models"]
    ranked = [r.result for r in run.iter_records("ok")]
    run.close()
    assert models == {"default": f"local:{settings.model}", "attacker": settings.attacker_spec}
    for result in ranked:  # the tiny generator's own NLL ranked the two fabrications
        assert all(f["nll"] > 0 for f in result["fabrications"]) and result["chosen"] != result["rejected"]

    record = json.loads((out / "iteration_1" / "summary.json").read_text())
    assert record["exports"] == {"atm-dpo": 2, "mito": 2}
    assert record["attacker_dpo"]["global_step"] == 2 and record["generator_mito"]["global_step"] == 2
    attacker, generator = (
        out / "iteration_1" / "attacker" / "merged",
        out / "iteration_1" / "generator" / "merged",
    )
    assert record["attacker_out"] == f"local:{attacker}" and record["generator_out"] == str(generator)
    assert (attacker / "config.json").is_file() and (generator / "config.json").is_file()
    assert yaml.safe_load((out / "iteration_1" / "attacker" / "config.yaml").read_text())["beta"] == 0.2

    names = [c["name"] for c in summary["checkpoints"]]
    assert names == ["base", "iteration_1"] and summary["final_generator"] == str(generator)
    for checkpoint, folder in zip(summary["checkpoints"], ("base", "iteration_1"), strict=True):
        assert checkpoint["rows"] == 2 and 0.0 <= checkpoint["attacked_exact_match"] <= 1.0
        assert checkpoint["predictions"] == str(out / folder / "eval" / "predictions.jsonl")
    evaluated = json.loads((out / "iteration_1" / "eval" / "summary.json").read_text())
    assert evaluated["model_folder"] == str(generator)
    assert (out / "em_under_attack.png").stat().st_size > 1000

    # Resume: a finished loop does nothing; a lost evaluation is redone and nothing else is
    assert run_atm_loop(settings, log=lambda _: None) == summary
    for done in ("result.json", "summary.json", "iteration_1/eval/summary.json"):
        (out / done).unlink()
    lines: list[str] = []
    again = run_atm_loop(settings, log=lines.append)
    assert isinstance(again, dict) and attacker_calls(openai_server) == 8
    assert sum("already complete" in line for line in lines) == 2  # attacker DPO, generator MITO
    assert again["checkpoints"] == summary["checkpoints"]


def test_settings_and_plan(tmp_path: Path, openai_server: Any) -> None:
    base = config(tmp_path, openai_server)
    settings = AtmSettings.model_validate(base)
    dpo = settings.stage_settings("dpo", "m", "d", tmp_path / "x")
    assert dpo.beta == 0.2 and dpo.learning_rate == 5e-6 and dpo.merge and dpo.lora.r == 4
    mito = settings.stage_settings("mito", "m", "d", tmp_path / "y")
    assert mito.beta == 0.2 and mito.learning_rate == 1e-2
    with pytest.raises(ConfigError, match=r"dpo\.model is set by the atm loop"):
        load_atm_settings(None, {**base, "dpo": {"model": "x"}})
    with pytest.raises(ConfigError, match="iterations"):
        load_atm_settings(None, {**base, "iterations": 0})
    overlap = {**base, "eval_data": base["data"]}
    with pytest.raises(TrainError, match="shares 2 question"):
        run_atm_loop(AtmSettings.model_validate(overlap), dry_run=True)
    with pytest.raises(ValueError, match="graph 'atm' has no option n_fakes"):
        run_atm_loop(AtmSettings.model_validate({**base, "atm": {"n_fakes": 2}}), dry_run=True)

    args = ["atm", "--dry-run", "--iterations", "2", "--initial-sft"]
    for key in ("model", "attacker_spec", "data", "eval_data", "output_dir"):
        args += ["--set", f"{key}={base[key]}"]
    result = CliRunner().invoke(train_app, args)
    assert result.exit_code == 0, result.output
    assert "2 training seeds, 2 held-out questions" in result.output
    assert "stage 0" in result.output and "iteration 2" in result.output
    assert not (tmp_path / "atm").exists()  # a dry run writes nothing
