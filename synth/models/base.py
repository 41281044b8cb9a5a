"""Contracts a backend may offer beyond AutoGen's ``ChatCompletionClient``.

Every backend is an ``autogen_core.models.ChatCompletionClient``: roles and graphs never know which one
they talk to. Sampling parameters travel in ``create(..., extra_create_args={...})`` with the OpenAI
names (``temperature``, ``top_p``, ``max_tokens``, ``seed``, ``stop``); every backend honours them.
A reply cut by the token budget has ``finish_reason == "length"``.

Some graphs (ATM's fabrication ranking, a log-probability judge) need the probability of a given
continuation. Backends that can compute it exactly implement :class:`SupportsLogprobs`; graphs check for
it when they are built and refuse a backend that cannot, instead of producing a wrong ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from autogen_core.models import LLMMessage, ModelFamily, ModelInfo

#: Names of the sampling parameters every backend understands in ``extra_create_args``.
SAMPLING_KEYS = ("temperature", "top_p", "max_tokens", "seed", "stop")

#: What a backend is taken to support when nothing says otherwise (a model name autogen doesn't know, a
#: replay file): everything roles ask for; ``ClientOptions.model_info`` narrows it.
CAPABLE_MODEL_INFO = ModelInfo(
    vision=False,
    function_calling=True,
    json_output=True,
    structured_output=True,
    family=ModelFamily.UNKNOWN,
    multiple_system_messages=True,
)


@dataclass(frozen=True)
class ScoreRequest:
    """Score ``continuation`` as the assistant's reply to ``messages``.

    The prompt is rendered exactly as for generation (chat template + assistant header), then the
    continuation's tokens are appended; the score is their mean negative log-likelihood (nats/token).
    """

    messages: Sequence[LLMMessage]
    continuation: str


@runtime_checkable
class SupportsLogprobs(Protocol):
    """A backend that returns exact log-probabilities of given text."""

    async def continuation_nll(self, requests: Sequence[ScoreRequest]) -> list[float]:
        """Mean token negative log-likelihood of each request's continuation, in request order."""
        ...
