"""Shared fixtures.

``openai_server``: a loopback OpenAI-compatible server (real HTTP on 127.0.0.1, background thread) for one
test. Script replies with ``openai_server.script(...)``, inject faults with ``set_faults(...)``, slow it
down with ``set_latency(...)``, read ``stats()`` / ``requests``; point clients at ``.base_url``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from synth.testing.openai_server import OpenAIServer

# `synth run` checks OpenAI-compatible endpoints before a run (tiny probe calls, the model in /models). The
# loopback server's scripted replies and fault plans count every call, so CLI runs in tests skip the check
# unless a test asks for it (tests/test_preflight.py, the transformers serve integration test).
os.environ["SYNTH_CHECK"] = "0"


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A started :class:`~synth.testing.openai_server.OpenAIServer`, stopped after the test."""
    with OpenAIServer() as server:
        yield server
