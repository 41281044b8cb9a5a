"""Model clients: a spec string -> an AutoGen ``ChatCompletionClient`` wrapped in :class:`ManagedClient`.

``make_client("openai:gpt-4o-mini")``, ``make_client("openai:MODEL@http://host:8000/v1")``,
``make_client("local:gemma-3-270m")``, ``make_client("replay:replies.jsonl")`` — roles never care which.
"""

from synth.models.base import SAMPLING_KEYS, ScoreRequest, SupportsLogprobs
from synth.models.managed import ClientOptions, ClientStats, ManagedClient, ManagedLogprobsClient
from synth.models.spec import ModelSpec, make_client, parse_spec

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
