"""Config validation: unknown keys and bad values fail early with the key, the known keys and a fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from synth.cli.train import train_app
from train.config import (
    ConfigError,
    DPOSettings,
    HybridSettings,
    SFTSettings,
    load_settings,
    parse_set,
)
from train.hybrid import stage_plan

BASE = "model: m\ndata: d\noutput_dir: o\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_unknown_key_names_it_lists_known_keys_and_suggests(tmp_path: Path) -> None:
    config = write(tmp_path, BASE + "lora:\n  rr: 8\nlearnig_rate: 1e-4\n")
    with pytest.raises(ConfigError) as err:
        load_settings("sft", config)
    message = str(err.value)
    assert str(config) in message and "--set KEY=VALUE" in message
    assert "lora.rr: unknown key; did you mean 'r'? Known keys here: r, alpha, dropout" in message
    assert "learnig_rate: unknown key; did you mean 'learning_rate'?" in message


def test_bad_values_and_missing_keys(tmp_path: Path) -> None:
    config = write(tmp_path, "model: m\noutput_dir: o\nprecision: bf17\nlora: {r: 0}\n")
    with pytest.raises(ConfigError) as err:
        load_settings("sft", config)
    message = str(err.value)
    assert "data: required key is missing" in message
    assert "precision: Input should be 'auto', 'bf16', 'fp16' or 'fp32' (got 'bf17')" in message
    assert "lora.r: Input should be greater than or equal to 1 (got 0)" in message


def test_precedence_file_then_set_then_flags(tmp_path: Path) -> None:
    config = write(tmp_path, BASE + "learning_rate: 0.1\nlora: {r: 4, alpha: 4}\nmax_steps: 5\n")
    overrides = parse_set(["lora.r=8", "max_steps=7", "report_to=none", "merge=true"])
    assert overrides == {"lora": {"r": 8}, "max_steps": 7, "report_to": "none", "merge": True}
    overrides["max_steps"] = 9  # an explicit flag wins over --set
    settings = load_settings("sft", config, overrides)
    assert isinstance(settings, SFTSettings)
    assert (settings.lora.r, settings.lora.alpha, settings.max_steps, settings.merge) == (8, 4, 9, True)
    with pytest.raises(ConfigError, match="must look like KEY=VALUE"):
        parse_set(["lora.r"])


def test_saved_config_of_another_kind_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path, "kind: dpo\n" + BASE)
    assert isinstance(load_settings("dpo", config), DPOSettings)
    with pytest.raises(ConfigError, match="is a 'dpo' config; use it with `synth train dpo`"):
        load_settings("sft", config)


def test_hybrid_stages_are_validated_and_resolved() -> None:
    raw = {"model": "m", "output_dir": "out", "learning_rate": 1e-3}
    with pytest.raises(ConfigError, match=r"stage2\.betta: unknown key; did you mean 'beta'"):
        stage_plan(HybridSettings(**raw, stage1={"data": "a"}, stage2={"data": "b", "betta": 1}))
    with pytest.raises(ValueError, match=r"stage1\.output_dir is set by the hybrid command"):
        HybridSettings(**raw, stage1={"data": "a", "output_dir": "x"}, stage2={"data": "b"})
    with pytest.raises(ValueError, match=r"stage2\.data is missing"):
        HybridSettings(**raw, stage1={"data": "a"}, stage2={})

    eto = stage_plan(HybridSettings(**raw, stage1={"data": "a"}, stage2={"data": "b"}))
    (kind1, one), (kind2, two) = eto
    assert (kind1, kind2) == ("sft", "dpo") and one.merge and one.learning_rate == 1e-3
    assert isinstance(two, DPOSettings) and two.learning_rate == 5e-6  # DPO's own default
    assert two.model == str(Path("out") / "stage1" / "merged") and two.output_dir == str(
        Path("out") / "stage2"
    )

    smart = stage_plan(
        HybridSettings(**raw, recipe="smart", stage1={"data": "short"}, stage2={"data": "long"})
    )
    assert [kind for kind, _ in smart] == ["sft", "sft"] and smart[1][1].learning_rate == 1e-3


def test_cli_reports_config_errors(tmp_path: Path) -> None:
    config = write(tmp_path, BASE + "tunning: lora\n")
    result = CliRunner().invoke(train_app, ["sft", "-c", str(config), "--dry-run"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert "tunning: unknown key; did you mean 'tuning'?" in str(result.exception)
