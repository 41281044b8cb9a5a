"""``replay:FILE.jsonl`` — scripted replies for tests and demos, via AutoGen's ReplayChatCompletionClient.

Each line of FILE is one reply, consumed in call order: ``{"content": "..."}`` (content may also be a
JSON object/array, which is encoded — handy for structured-output roles), optionally with
``"finish_reason"``, or a bare JSON string (``"hello"``), or any other text taken verbatim. Blank lines
and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

from autogen_core.models import CreateResult, LLMMessage, ModelInfo, RequestUsage
from autogen_ext.models.replay import ReplayChatCompletionClient

from synth.errors import ModelSpecError, SynthError
from synth.models.base import CAPABLE_MODEL_INFO
from synth.models.managed import ClientOptions

#: Replay accepts whatever a role asks for: the point is to test the role, not the model.
REPLAY_MODEL_INFO = CAPABLE_MODEL_INFO


class ReplayExhaustedError(SynthError, ValueError):
    """More calls than scripted replies (a ``ValueError`` too, like AutoGen's own)."""


def load_replies(path: Path) -> list[str | CreateResult]:
    """Parse FILE; errors name ``file:line``."""
    if not path.is_file():
        raise ModelSpecError(f"replay file {path} does not exist (spec replay:{path}).")
    replies: list[str | CreateResult] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            value: Any = json.loads(line)
        except json.JSONDecodeError:
            replies.append(line)
            continue
        if isinstance(value, str):
            replies.append(value)
        elif isinstance(value, dict) and "content" in value:
            content = value["content"]
            text = content if isinstance(content, str) else json.dumps(content)
            finish = value.get("finish_reason")
            if finish is None:
                replies.append(text)
            else:
                usage = RequestUsage(prompt_tokens=0, completion_tokens=len(text.split()))
                replies.append(CreateResult(finish_reason=finish, content=text, usage=usage, cached=False))
        else:
            raise ModelSpecError(
                f'{path}:{number}: a replay line must be {{"content": ...}} or a JSON string, '
                f"got {line[:80]!r}. "
                'To reply with a JSON object, wrap it: {"content": {...}}.'
            )
    if not replies:
        raise ModelSpecError(f"replay file {path} has no replies.")
    return replies


class SynthReplayClient(ReplayChatCompletionClient):
    """ReplayChatCompletionClient whose exhaustion error says which file ran out, after how many calls."""

    def __init__(
        self,
        chat_completions: Sequence[str | CreateResult],
        model_info: ModelInfo | None = None,
        *,
        source: str = "",
    ) -> None:
        super().__init__(chat_completions, model_info=model_info or REPLAY_MODEL_INFO)
        self.source = source

    def _check_left(self) -> None:
        if self._current_index >= len(self.chat_completions):
            raise ReplayExhaustedError(
                f"replay {self.source or 'client'}: all {len(self.chat_completions)} scripted replies are "
                "used; add lines to the file (one per model call) or reset() the client."
            )

    async def create(self, messages: Sequence[LLMMessage], **kwargs: Any) -> CreateResult:
        self._check_left()
        return await super().create(messages, **kwargs)

    async def create_stream(
        self, messages: Sequence[LLMMessage], **kwargs: Any
    ) -> AsyncGenerator[str | CreateResult, None]:
        self._check_left()
        async for item in super().create_stream(messages, **kwargs):
            yield item

    def __repr__(self) -> str:
        return f"{type(self).__name__}(source={self.source!r}, replies={len(self.chat_completions)})"


def build_replay_client(path: Path, options: ClientOptions) -> SynthReplayClient:
    info = {**REPLAY_MODEL_INFO, **options.model_info}
    return SynthReplayClient(load_replies(path), model_info=info, source=str(path))  # type: ignore[arg-type]
