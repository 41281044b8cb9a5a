"""The embedded local backend (``local:gemma-3-270m`` or ``local:/path/to/hf/folder``).

Imports are light: torch/transformers load when a client is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synth.models.local.convert import model_path

if TYPE_CHECKING:
    from synth.models.local.client import LocalChatCompletionClient

__all__ = ["LocalChatCompletionClient", "model_path"]


def __getattr__(name: str) -> Any:
    if name == "LocalChatCompletionClient":
        from synth.models.local.client import LocalChatCompletionClient

        return LocalChatCompletionClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
