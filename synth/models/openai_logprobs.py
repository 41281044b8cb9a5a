"""Scoring given text on an OpenAI-compatible server, with vLLM's prompt log-probabilities.

OpenAI's own chat API cannot return the log-probability of text it did not generate; vLLM can. A chat
completion request with vLLM's ``prompt_logprobs`` extension returns, for every prompt token, its
log-probability given the tokens before it (``[None, {token_id: {logprob, rank, decoded_token}}, ...]``,
the prompt token first in each entry). The continuation to score is sent as a final assistant message
with ``continue_final_message=True`` and ``add_generation_prompt=False``: the server renders it with the
model's own chat template exactly where a generated reply would start, with no end-of-turn token after
it — the same prompt as for generation, as :class:`~synth.models.base.ScoreRequest` requires.

Which prompt tokens are the continuation's is counted, not guessed from decoded token text (whose form
differs across vLLM versions and byte-level tokenizers): a second request with the prompt alone
(``add_generation_prompt=True``) reports ``usage.prompt_tokens`` = P, and the continuation is the last
T - P of the T scored positions. Both requests generate one token (vLLM needs ``max_tokens >= 1``) and run
concurrently; vLLM's prefix cache makes the second nearly free.

Selected with the spec suffix ``?logprobs=vllm`` (``openai:MODEL@http://host:8000/v1?logprobs=vllm``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any

from synth.errors import SynthError
from synth.models.base import ScoreRequest
from synth.models.openai_client import SynthOpenAIChatCompletionClient
from synth.recording import message_dict


class LogprobsUnavailableError(SynthError):
    """The server did not return what scoring needs (it is not vLLM, or too old)."""


class VllmScoringClient(SynthOpenAIChatCompletionClient):
    """An OpenAI-compatible client that also implements :class:`~synth.models.base.SupportsLogprobs`."""

    async def continuation_nll(self, requests: Sequence[ScoreRequest]) -> list[float]:
        """Mean token NLL (nats) of each continuation as the assistant's reply; requests run concurrently."""
        return list(await asyncio.gather(*(self._nll(request) for request in requests)))

    async def _nll(self, request: ScoreRequest) -> float:
        if not request.continuation.strip():
            raise ValueError("cannot score an empty continuation: it has no tokens")
        messages = [message_dict(m) for m in request.messages]
        client: Any = self._client  # the SDK's overloads do not type plain message dicts
        model = self._create_args["model"]
        scored, prompt_only = await asyncio.gather(
            client.chat.completions.create(
                model=model,
                messages=[*messages, {"role": "assistant", "content": request.continuation}],
                max_tokens=1,
                temperature=0.0,
                extra_body={
                    "prompt_logprobs": 0,
                    "add_generation_prompt": False,
                    "continue_final_message": True,
                },
            ),
            client.chat.completions.create(model=model, messages=messages, max_tokens=1, temperature=0.0),
        )
        where = f"{model} at {client.base_url}"
        positions = prompt_logprobs_of(scored.model_dump(), where)
        return continuation_nll_from(positions, prompt_only.usage.prompt_tokens, where)


def prompt_logprobs_of(body: Mapping[str, Any], where: str) -> list[Any]:
    """The ``prompt_logprobs`` list of a chat completion (vLLM puts it at the top level; some builds in
    the choice)."""
    found = body.get("prompt_logprobs")
    if found is None and body.get("choices"):
        found = body["choices"][0].get("prompt_logprobs")
    if not isinstance(found, list) or not found:
        raise LogprobsUnavailableError(
            f"{where} returned no prompt_logprobs, so it cannot score text: the model spec says "
            "?logprobs=vllm, which needs a vLLM server (chat completions with prompt_logprobs and "
            "continue_final_message). Point the spec at a vLLM server, or score with the embedded model "
            "(local:gemma-3-270m)."
        )
    return found


def continuation_nll_from(positions: Sequence[Any], prompt_tokens: int, where: str) -> float:
    """Mean NLL of the last ``len(positions) - prompt_tokens`` positions (each ``{token_id: {logprob}}``,
    the scored token's entry first)."""
    count = len(positions) - prompt_tokens
    if not 0 < count < len(positions):
        raise LogprobsUnavailableError(
            f"{where}: the prompt with the continuation has {len(positions)} tokens and the prompt alone "
            f"{prompt_tokens}, so the continuation's tokens cannot be located; the server's chat template "
            "must render a final assistant message (continue_final_message) where generation would start"
        )
    logprobs = []
    for entry in positions[-count:]:
        first = next(iter(entry.values())) if isinstance(entry, Mapping) and entry else None
        value = first.get("logprob") if isinstance(first, Mapping) else None
        if not isinstance(value, int | float) or math.isnan(value):
            raise LogprobsUnavailableError(
                f"{where} returned a prompt_logprobs entry without a logprob: {entry}"
            )
        logprobs.append(float(value))
    return -sum(logprobs) / len(logprobs)
