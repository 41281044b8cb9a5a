"""LoRA DPO from a real `synth export -f dpo` folder: offline, no reference model loaded, no download."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from graphs.coevol import GRAPH
from synth.trajectory import Trajectory
from tests.train.fixtures_train import base_settings, tiny_model
from train.config import DPOSettings
from train.dpo import run_dpo
from train.runfolder import RunResult


def coevol_record(i: int) -> Trajectory:
    return Trajectory(
        id=f"t{i}",
        graph="coevol",
        seed={"instruction": f"Name a colour ({i})."},
        status="ok",
        result={
            "instruction": f"Name a colour ({i}).",
            "input": "",
            "original": "I cannot answer that.",
            "evolved": f"Red, like a ripe tomato ({i}).",
            "accepted_rounds": 1,
            "rounds": [],
            "stop_reason": "",
        },
    )


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """HF offline mode, and any non-loopback connection or hub download fails the test."""
    attempts: list[Any] = []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else str(address)
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise OSError(f"network access attempted: {address}")
        return real_connect(self, address)

    def no_download(*args: Any, **kwargs: Any) -> Any:
        attempts.append((args, kwargs))
        raise AssertionError(f"hub download attempted: {args} {kwargs}")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    import huggingface_hub
    import transformers.utils.hub as transformers_hub

    for module in (huggingface_hub, transformers_hub):
        for name in ("hf_hub_download", "snapshot_download"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, no_download)
    return attempts


def test_lora_dpo_on_a_dpo_export_runs_offline(tmp_path: Path, no_network: list[Any]) -> None:
    from datasets import Dataset

    # Rows and schema exactly as `synth export RUN -f dpo` writes them for CoEvol.
    fmt = GRAPH.exports["dpo"]
    rows = [row for i in range(4) for row in fmt.rows(coevol_record(i))]
    (tmp_path / "dpo" / "data").mkdir(parents=True)
    Dataset.from_list(rows, features=fmt.features()).to_parquet(
        str(tmp_path / "dpo" / "data" / "train.parquet")
    )
    model = tiny_model(tmp_path / "tiny")

    captured: dict[str, Any] = {}

    from transformers import TrainerCallback

    class Capture(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            captured["model"] = kwargs["model"]

    settings = DPOSettings(**base_settings(model, tmp_path / "dpo", tmp_path / "out", learning_rate=1e-3))
    result = run_dpo(settings, callbacks=[Capture()], log=lambda _: None)
    assert isinstance(result, RunResult) and result.global_step == 2 and result.train_loss is not None
    assert (tmp_path / "out" / "adapter" / "adapter_config.json").is_file()
    # The reference is the adapter switched off: a PEFT model with a single adapter, no second network.
    policy = captured["model"]
    assert type(policy).__name__.startswith("Peft") and list(policy.peft_config) == ["default"]
    assert no_network == []
