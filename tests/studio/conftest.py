"""The `langgraph dev` tests need the LangGraph CLI (`langgraph-cli[inmem]`), i.e. the third environment
`.venv-studio` (the CLI upgrades protobuf past autogen-core's pin, so it stays out of the main venv).

Elsewhere they are reported as skipped with where they run; `make test` runs them there:
``make venv-studio && .venv-studio/bin/python -m pytest tests/studio``.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
WHERE = (
    "langgraph dev tests run in the LangGraph CLI environment, not this one: "
    "`make venv-studio && .venv-studio/bin/python -m pytest tests/studio` (`make test` runs them there)"
)


def langgraph_cli() -> str | None:
    """The `langgraph` executable beside this interpreter, when the CLI and its in-memory server are here."""
    if importlib.util.find_spec("langgraph_api") is None or importlib.util.find_spec("langgraph_cli") is None:
        return None
    beside = Path(sys.executable).parent / "langgraph"
    return str(beside) if beside.exists() else shutil.which("langgraph")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if langgraph_cli() is not None:
        return
    skip = pytest.mark.skip(reason=WHERE)
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(skip)
