"""An interrupted run resumes from its last checkpoint; a finished one is not re-trained; a changed config
or changed data is refused with a way out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

from tests.train.fixtures_train import base_settings, smart_long_row, tiny_model, write_dataset
from train.config import SFTSettings
from train.errors import TrainError
from train.runfolder import RunResult
from train.sft import run_sft


class Killed(Exception):
    pass


class KillAfterSave(TrainerCallback):
    """Simulates a crash right after checkpoint ``at`` was written."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.at:
            raise Killed


def test_resume_from_last_checkpoint(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "tiny")
    data = write_dataset(tmp_path / "data", [smart_long_row(i) for i in range(8)])
    raw = base_settings(model, data, tmp_path / "out", max_steps=3)
    quiet = {"log": lambda _: None}
    with pytest.raises(Killed):
        run_sft(SFTSettings(**raw), callbacks=[KillAfterSave(2)], **quiet)
    assert not (tmp_path / "out" / "result.json").exists()

    result = run_sft(SFTSettings(**raw), **quiet)
    assert isinstance(result, RunResult) and result.status == "resumed"
    assert result.resumed_from is not None and result.resumed_from.endswith("checkpoint-2")
    assert result.global_step == 3

    done = run_sft(SFTSettings(**raw), **quiet)
    assert isinstance(done, RunResult) and done.status == "already complete"

    with pytest.raises(TrainError, match=r"different config \(lora\.r: 4 -> 8\).*--fresh"):
        run_sft(SFTSettings(**{**raw, "lora": {"r": 8, "alpha": 8}}), **quiet)

    write_dataset(tmp_path / "data", [smart_long_row(i) for i in range(5)])
    with pytest.raises(TrainError, match=r"training data changed .*8 rows.*5 rows"):
        run_sft(SFTSettings(**raw), **quiet)
    fresh = run_sft(SFTSettings(**raw), fresh=True, **quiet)
    assert isinstance(fresh, RunResult) and fresh.status == "trained" and fresh.resumed_from is None
