"""Scoring text on an OpenAI-compatible server with vLLM's prompt_logprobs (``?logprobs=vllm``)."""

from __future__ import annotations

from typing import Any

import pytest
from autogen_core.models import SystemMessage, UserMessage

from synth.errors import ModelSpecError
from synth.models import ScoreRequest, SupportsLogprobs, make_client, parse_spec
from synth.models.openai_logprobs import LogprobsUnavailableError, continuation_nll_from, prompt_logprobs_of
from synth.testing.replies import prompt_text, tokens

MESSAGES = [
    SystemMessage(content="Answer briefly."),
    UserMessage(content="Capital of France?", source="user"),
]


def test_the_spec_suffix_selects_scoring_and_round_trips() -> None:
    parsed = parse_spec("openai:Qwen/Qwen2.5-7B@http://localhost:8000/v1?logprobs=vllm")
    assert parsed.logprobs == "vllm" and parsed.base_url == "http://localhost:8000/v1"
    assert str(parsed) == "openai:Qwen/Qwen2.5-7B@http://localhost:8000/v1?logprobs=vllm"
    assert parse_spec(str(parsed)) == parsed
    assert parse_spec("openai:m@http://h:1/v1").logprobs is None
    for bad, why in (
        ("openai:m@http://h:1/v1?logprobs=echo", "logprobs=echo is not supported; use logprobs=vllm"),
        ("openai:m@http://h:1/v1?temperature=0", "unknown option temperature"),
        ("openai:m@http://h:1/v1?logprobs", "must look like logprobs=vllm"),
    ):
        with pytest.raises(ModelSpecError, match=why):
            parse_spec(bad)


def test_only_a_logprobs_spec_supports_logprobs(openai_server: Any) -> None:
    assert isinstance(make_client(f"openai:m@{openai_server.base_url}?logprobs=vllm"), SupportsLogprobs)
    assert not isinstance(make_client(f"openai:m@{openai_server.base_url}"), SupportsLogprobs)


async def test_mean_nll_of_the_continuation_tokens(openai_server: Any) -> None:
    def responder(request: dict[str, Any]) -> Any:
        if request.get("prompt_logprobs") is None:
            return "x"  # the prompt-only length probe
        words = tokens(prompt_text(request))
        # every prompt token -0.5; the three continuation tokens -1, -2, -3 (mean NLL 2.0)
        return {
            "content": "x",
            "prompt_logprobs": [(w, -0.5) for w in words[:-3]]
            + list(zip(words[-3:], [-1, -2, -3], strict=True)),
        }

    openai_server.script(responder)
    client = make_client(f"openai:m@{openai_server.base_url}?logprobs=vllm")
    scores = await client.continuation_nll(
        [ScoreRequest(MESSAGES, "Paris, of course"), ScoreRequest(MESSAGES, "a b c")]
    )
    assert scores == pytest.approx([2.0, 2.0])
    scored = [r for r in openai_server.requests if r.get("prompt_logprobs") is not None]
    assert len(scored) == 2 and len(openai_server.requests) == 4
    body = scored[0]
    assert body["prompt_logprobs"] == 0 and body["max_tokens"] == 1
    assert body["add_generation_prompt"] is False and body["continue_final_message"] is True
    assert body["messages"][:2] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Capital of France?"},
    ]
    with pytest.raises(ValueError, match="empty continuation"):
        await client.continuation_nll([ScoreRequest(MESSAGES, "  ")])
    await client.close()


def test_missing_or_unusable_prompt_logprobs_are_clear_errors() -> None:
    with pytest.raises(LogprobsUnavailableError, match=r"m at http://h/v1 returned no prompt_logprobs.*vLLM"):
        prompt_logprobs_of({"choices": [{"message": {}}]}, "m at http://h/v1")
    entry = {"7": {"logprob": -2.0, "rank": 1}, "9": {"logprob": -0.1, "rank": 1}}
    assert prompt_logprobs_of({"choices": [{"prompt_logprobs": [None, entry]}]}, "w") == [None, entry]
    assert continuation_nll_from([None, entry, entry], 1, "w") == pytest.approx(2.0)  # the prompt token first
    with pytest.raises(LogprobsUnavailableError, match="cannot be located"):
        continuation_nll_from([None, entry], 2, "w")
    with pytest.raises(LogprobsUnavailableError, match="without a logprob"):
        continuation_nll_from([None, entry, {"3": {}}], 2, "w")
