"""The PPO tests need TRL 1.12 (PPOTrainer was removed in 1.13), i.e. the second environment `.venv-ppo`.

Under current TRL they are reported as skipped with where they run; `make test` runs them there:
``make venv-ppo && .venv-ppo/bin/python -m pytest tests/train/ppo``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from train.ppo import ppo_unavailable_reason

HERE = Path(__file__).parent
WHERE = (
    "PPO tests run in the PPO environment (trl==1.12.0), not this one: "
    "`make venv-ppo && .venv-ppo/bin/python -m pytest tests/train/ppo` (`make test` runs them there)"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ppo_unavailable_reason() is None:
        return
    skip = pytest.mark.skip(reason=WHERE)
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(skip)
