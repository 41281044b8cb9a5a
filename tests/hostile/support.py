"""Shared pieces of the hostile-input suite: a one-node YAML graph, a run request on the loopback server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synth.engine.session import RunRequest

ECHO_SPEC = """\
name: echo
seed: [question]
roles:
  answerer:
    instructions: Answer briefly.
    prompt: "Question: {{ question }}"
nodes:
  answer: answerer
edges:
  - {from: START, to: answer}
  - {from: answer, to: END}
exports:
  sft:
    prompt: "{{ question }}"
    response: "{{ answer.text }}"
"""


def echo_graph(folder: Path) -> Path:
    """A one-node graph: every seed row makes one model call (free text), and an sft export."""
    path = folder / "echo.yaml"
    path.write_text(ECHO_SPEC)
    return path


def seeds(path: Path, questions: list[str]) -> Path:
    path.write_text("".join(json.dumps({"question": q}) + "\n" for q in questions))
    return path


def request(tmp_path: Path, server: Any, input: Path, **extra: Any) -> RunRequest:
    """A ``synth run`` of the echo graph over ``input`` into ``tmp_path/run`` (override with ``out=``)."""
    fields: dict[str, Any] = {
        "graph": str(echo_graph(tmp_path)),
        "input": input,
        "out": tmp_path / "run",
        "models": {"default": f"openai:scripted@{server.base_url}"},
        "concurrency": 4,
        "retries": 0,
        **extra,
    }
    return RunRequest(**fields)
