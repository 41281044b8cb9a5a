"""``hybrid`` (ETO: SFT -> merge -> DPO with a new LoRA): stage 2 starts from the merged stage-1 weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import TrainerCallback
from typer.testing import CliRunner

from synth.cli.train import train_app
from tests.train.fixtures_train import (
    base_settings,
    dpo_row,
    smart_long_row,
    smart_short_row,
    tiny_model,
    write_dataset,
)
from train.config import HybridSettings
from train.hybrid import run_hybrid
from train.runfolder import RunResult


class BaseWeights(TrainerCallback):
    """Records the frozen base weights of the (PEFT-wrapped) model when training starts."""

    def __init__(self) -> None:
        self.weights: dict[str, torch.Tensor] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for name, tensor in kwargs["model"].named_parameters():
            if "lora_" in name:
                continue
            plain = name.removeprefix("base_model.model.").replace(".base_layer", "")
            self.weights[plain] = tensor.detach().clone()


def test_eto_stage2_starts_from_merged_stage1(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "tiny")
    sft = write_dataset(tmp_path / "sft", [smart_long_row(i) for i in range(4)])
    dpo = write_dataset(tmp_path / "dpo", [dpo_row(i) for i in range(4)])
    raw = base_settings(model, sft, tmp_path / "out")
    raw.pop("data")
    settings = HybridSettings(
        **raw, recipe="eto", stage1={"data": str(sft)}, stage2={"data": str(dpo), "beta": 0.2}
    )
    seen = BaseWeights()
    result = run_hybrid(settings, stage_callbacks={2: [seen]}, log=lambda _: None)
    assert isinstance(result, RunResult) and result.kind == "hybrid-eto" and len(result.stages) == 2

    merged_dir = tmp_path / "out" / "stage1" / "merged"
    merged = load_file(str(merged_dir / "model.safetensors"))
    original = load_file(str(model / "model.safetensors"))
    # Stage 1 changed the model, and stage 2's frozen base is exactly the merged stage-1 model.
    changed = [k for k in merged if not torch.equal(merged[k], original[k])]
    assert changed, "stage 1 should have changed some weights"
    shared = set(seen.weights) & set(merged)
    assert len(shared) == len(merged), set(merged) - shared
    for name in merged:
        assert torch.equal(seen.weights[name], merged[name]), name

    stage2 = json.loads((tmp_path / "out" / "stage2" / "adapter" / "adapter_config.json").read_text())
    assert Path(stage2["base_model_name_or_path"]) == merged_dir.resolve()
    saved = (tmp_path / "out" / "stage2" / "config.yaml").read_text()
    assert "kind: dpo" in saved and "beta: 0.2" in saved

    again = run_hybrid(settings, log=lambda _: None)
    assert isinstance(again, RunResult) and again.status == "already complete"


def test_hybrid_dry_run_from_the_cli(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "tiny")
    short = write_dataset(tmp_path / "short", [smart_short_row(i) for i in range(3)])
    config = tmp_path / "smart.yaml"
    config.write_text(f"model: {model}\noutput_dir: {tmp_path / 'out'}\nrecipe: smart\ndevice: cpu\n")
    args = ["hybrid", "-c", str(config), "--stage1-data", str(short), "--stage2-data", "long", "--dry-run"]
    result = CliRunner().invoke(train_app, args)
    assert result.exit_code == 0, result.output
    assert "3 rows, prompt_completion (conversational)" in result.output
    assert "stage 2 (sft, recipe smart)" in result.output and "stage1/merged" in result.output
    assert not (tmp_path / "out").exists()
