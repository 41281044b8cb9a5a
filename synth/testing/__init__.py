"""Test doubles for synth: a loopback OpenAI-compatible server with scripted replies, latency and faults.

Names are imported lazily so that ``python -m synth.testing.openai_server`` does not import the module
twice (once through this package, once as ``__main__``).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "OpenAIServer": "synth.testing.openai_server",
    "ServerCore": "synth.testing._core",
    "Latency": "synth.testing.openai_server",
    "Faults": "synth.testing.openai_server",
    "ServerProcess": "synth.testing.process",
    "Reply": "synth.testing.replies",
    "QueueResponder": "synth.testing.replies",
    "by_substring": "synth.testing.replies",
    "constant": "synth.testing.replies",
    "default_responder": "synth.testing.replies",
    "example_from_schema": "synth.testing.replies",
    "last_user_text": "synth.testing.replies",
    "system_text": "synth.testing.replies",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'synth.testing' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
