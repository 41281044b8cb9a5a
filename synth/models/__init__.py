"""Model clients: a spec string -> an AutoGen ``ChatCompletionClient`` wrapped in :class:`ManagedClient`.

``make_client("openai:gpt-4o-mini")``, ``make_client("openai:MODEL@http://host:8000/v1")``,
``make_client("local:gemma-3-270m")``, ``make_client("replay:replies.jsonl")`` — roles never care which.

Names load on first use: importing a light module of this package (:mod:`synth.models.forwarding`, which
:mod:`synth.recording` builds on) must not pull in :mod:`synth.models.managed`, which imports
:mod:`synth.recording` back.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synth.models.base import SAMPLING_KEYS, ScoreRequest, SupportsLogprobs
    from synth.models.managed import ClientOptions, ClientStats, ManagedClient, ManagedLogprobsClient
    from synth.models.spec import ModelSpec, make_client, parse_spec

_EXPORTS = {
    "SAMPLING_KEYS": "synth.models.base",
    "ScoreRequest": "synth.models.base",
    "SupportsLogprobs": "synth.models.base",
    "ClientOptions": "synth.models.managed",
    "ClientStats": "synth.models.managed",
    "ManagedClient": "synth.models.managed",
    "ManagedLogprobsClient": "synth.models.managed",
    "ModelSpec": "synth.models.spec",
    "make_client": "synth.models.spec",
    "parse_spec": "synth.models.spec",
}

__all__ = [
    "SAMPLING_KEYS",
    "ClientOptions",
    "ClientStats",
    "ManagedClient",
    "ManagedLogprobsClient",
    "ModelSpec",
    "ScoreRequest",
    "SupportsLogprobs",
    "make_client",
    "parse_spec",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'synth.models' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
