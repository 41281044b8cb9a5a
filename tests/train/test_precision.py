"""The CPU speed defaults: bf16 where the CPU has native bf16 units (same losses as fp32 within rounding),
and as many torch threads as there are idle cores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.train.fixtures_train import base_settings, smart_long_row, tiny_model, write_dataset
from train.config import SFTSettings
from train.errors import TrainError
from train.model_setup import Hardware, detect_hardware, resolve_precision
from train.speed import THREADS_ENV, apply_threads, idle_cores, pick_threads


def test_auto_precision_is_bf16_on_cpus_with_bf16_units_only() -> None:
    from synth.models.local.hardware import cpu_supports_bf16

    amx, plain = Hardware("cpu", 0, True, "x"), Hardware("cpu", 0, False, "x")
    assert resolve_precision("auto", amx) == "bf16" and resolve_precision("auto", plain) == "fp32"
    assert resolve_precision("fp32", amx) == "fp32" and resolve_precision("bf16", plain) == "bf16"
    assert resolve_precision("auto", Hardware("cuda", 1, False, "old")) == "fp16"
    assert detect_hardware("cpu").bf16 is cpu_supports_bf16()
    assert ("bf16 units" in detect_hardware("cpu").describe()) is cpu_supports_bf16()


def _adapter_dtypes(folder: Path) -> set[str]:
    from safetensors.torch import load_file

    return {str(t.dtype) for t in load_file(str(folder / "adapter_model.safetensors")).values()}


def _train_losses(settings: SFTSettings) -> list[float]:
    from train.sft import run_sft

    run_sft(settings, log=lambda _line: None)
    states = Path(settings.output_dir).glob("checkpoints/checkpoint-*/trainer_state.json")
    state = max(states, key=lambda p: int(p.parent.name.split("-")[1]))
    history = json.loads(state.read_text(encoding="utf-8"))["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def test_bf16_sft_losses_match_fp32_over_a_few_steps(tmp_path: Path) -> None:
    """The bf16 path (bf16 frozen base, fp32 LoRA adapters, CPU autocast, fused head at loss positions)
    trains like fp32: the same losses step after step, within bf16 rounding."""
    model = tiny_model(tmp_path / "tiny")
    data = write_dataset(tmp_path / "long", [smart_long_row(i) for i in range(8)])
    losses = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        settings = SFTSettings(**base_settings(model, data, out, precision=precision, max_steps=4))
        losses[precision] = _train_losses(settings)
        # the LoRA adapter itself stays fp32 in either precision (only the frozen base is bf16)
        assert _adapter_dtypes(out / "adapter") == {"torch.float32"}
    fp32, bf16 = losses["fp32"], losses["bf16"]
    assert len(fp32) == len(bf16) == 4
    assert fp32[-1] < fp32[0] - 0.05  # it learns, so matching curves say something
    for a, b in zip(fp32, bf16, strict=True):
        assert b == pytest.approx(a, rel=0.005), (fp32, bf16)


def test_threads_follow_idle_cores_unless_pinned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import synth.models.local.threads as speed

    stat = tmp_path / "stat"
    cpus = os.cpu_count() or 1
    # /proc/stat: user nice system idle iowait irq softirq steal; 1000 ticks pass, 250 * cpus idle
    stat.write_text("cpu  100 0 100 1000 0 0 0 0 0 0\ncpu0 1 2 3\n", encoding="ascii")
    later = f"cpu  {100 + 1000 * cpus - 250 * cpus} 0 100 {1000 + 250 * cpus} 0 0 0 0 0 0\n"
    monkeypatch.setattr(speed.time, "sleep", lambda _s: stat.write_text(later, encoding="ascii"))
    assert idle_cores(0.0, stat) == pytest.approx(cpus * 0.25)
    assert idle_cores(0.0, tmp_path / "missing") is None

    from synth.models.local.hardware import usable_cpus

    monkeypatch.setattr(speed, "idle_cores", lambda: 0.2)
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert pick_threads() == 1  # every core busy: one thread, never zero
    monkeypatch.setattr(speed, "idle_cores", lambda: 1.7)
    assert pick_threads() == 1  # a core only 70 % idle does not count
    monkeypatch.setattr(speed, "idle_cores", lambda: 1.8)
    assert pick_threads() == min(2, usable_cpus())
    monkeypatch.setattr(speed, "idle_cores", lambda: 64.0)
    assert pick_threads() == usable_cpus()  # never more than this process may use
    monkeypatch.setenv(THREADS_ENV, "3")
    assert pick_threads() == 3
    import torch

    before = torch.get_num_threads()
    try:
        assert apply_threads() == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(
        TrainError, match=r"\$SYNTH_TORCH_THREADS must be a whole number of threads, got 'many'"
    ):
        pick_threads()


def test_run_logs_its_thread_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from train.sft import run_sft

    model = tiny_model(tmp_path / "tiny")
    data = write_dataset(tmp_path / "long", [smart_long_row(i) for i in range(2)])
    monkeypatch.setenv(THREADS_ENV, "1")
    lines: list[str] = []
    settings = SFTSettings(**base_settings(model, data, tmp_path / "out", max_steps=1, precision="fp32"))
    import torch

    before = torch.get_num_threads()
    try:
        run_sft(settings, log=lines.append)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert any(line.startswith("torch threads: 1 ") for line in lines), lines
