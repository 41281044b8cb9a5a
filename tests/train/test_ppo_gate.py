"""Under current TRL (no PPOTrainer since 1.13) `synth train ppo` stops and says how to get the PPO
environment; the PPO tests themselves run in that environment (tests/train/ppo, `.venv-ppo`)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from train.config import PPOSettings
from train.ppo import PPOUnavailableError, ppo_unavailable_reason, run_ppo

pytestmark = pytest.mark.skipif(
    ppo_unavailable_reason() is None, reason="this environment has TRL 1.12: PPO runs (tests/train/ppo)"
)


def test_synth_train_ppo_exits_with_how_to_create_the_ppo_environment() -> None:
    # The real console entry point, as a user runs it: exit status 2 and the instructions on stderr.
    done = subprocess.run(
        [sys.executable, "-c", "from synth.cli.root import main; main()", "train", "ppo", "--model", "m"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    message = " ".join(done.stdout.split() + done.stderr.split())
    assert "needs trl==1.12.0" in message and "TRL removed PPOTrainer in 1.13" in message
    assert "make venv-ppo" in message and ".venv-ppo/bin/synth train ppo" in message
    assert "pip install -e '.[ppo,dev]'" in message


def test_the_python_api_refuses_the_same_way(tmp_path: object) -> None:
    settings = PPOSettings(model="m", data="d", output_dir=str(tmp_path))
    with pytest.raises(PPOUnavailableError, match="make venv-ppo"):
        run_ppo(settings, dry_run=True)
