"""Shared fixtures.

``openai_server``: a loopback OpenAI-compatible server (real HTTP on 127.0.0.1, background thread) for one
test. Script replies with ``openai_server.script(...)``, inject faults with ``set_faults(...)``, slow it
down with ``set_latency(...)``, read ``stats()`` / ``requests``; point clients at ``.base_url``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from synth.testing.openai_server import OpenAIServer


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A started :class:`~synth.testing.openai_server.OpenAIServer`, stopped after the test."""
    with OpenAIServer() as server:
        yield server
