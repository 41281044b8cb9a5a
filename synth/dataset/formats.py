"""Column schemas and message helpers shared by every export format (generic and graph-specific).

Kept apart from :mod:`synth.dataset.export` (which writes datasets) so format modules —
:mod:`synth.dataset.reuse` and the graphs' ``*_exports`` modules — can import them without importing the
writer. ``datasets`` is imported lazily: it is heavy, and a graph module is imported by every ``synth``
command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from synth.graph import ExportFormat
from synth.trajectory import Trajectory


def message_list() -> Any:
    """A conversational column: a list of ``{role, content}`` messages (TRL's conversational format)."""
    from datasets import List, Value

    return List({"role": Value("string"), "content": Value("string")})


def sft_features() -> Any:
    """``id`` + ``messages``: TRL's conversational language-modeling format."""
    from datasets import Features, Value

    return Features({"id": Value("string"), "messages": message_list()})


def dpo_features() -> Any:
    """``id`` + conversational ``prompt`` / ``chosen`` / ``rejected``: TRL's preference format."""
    from datasets import Features, Value

    return Features(
        {
            "id": Value("string"),
            "prompt": message_list(),
            "chosen": message_list(),
            "rejected": message_list(),
        }
    )


def prompt_completion_features() -> Any:
    """``id`` + conversational ``prompt`` / ``completion``: TRL trains on the completion only by default."""
    from datasets import Features, Value

    return Features({"id": Value("string"), "prompt": message_list(), "completion": message_list()})


def rl_features() -> Any:
    """``id`` + ``prompt`` and the reward fields: gold ``answers`` (may be empty) and a ``reference``."""
    from datasets import Features, List, Value

    return Features(
        {
            "id": Value("string"),
            "prompt": message_list(),
            "answers": List(Value("string")),
            "reference": Value("string"),
        }
    )


def user_turn(instruction: str, input_text: str = "") -> dict[str, str]:
    """The user message of an Alpaca-style seed: the instruction, then its input when there is one."""
    content = f"{instruction}\n\n{input_text}" if input_text else instruction
    return {"role": "user", "content": content}


def assistant_turn(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def sft_export(
    prompt: Callable[[dict[str, Any]], str],
    response: Callable[[dict[str, Any]], str],
    *,
    when: Callable[[dict[str, Any]], bool] | None = None,
    description: str = "prompt -> response",
) -> ExportFormat:
    """An ``sft`` format: per trajectory whose result passes ``when``, one user turn ``prompt(result)``
    and one assistant turn ``response(result)`` (the Python form of a YAML graph's ``exports.sft``)."""

    def rows(trajectory: Trajectory) -> Iterable[dict[str, Any]]:
        result = trajectory.result
        if when is None or when(result):
            turns = [user_turn(prompt(result)), assistant_turn(response(result))]
            yield {"id": trajectory.id, "messages": turns}

    return ExportFormat("sft", description, rows, sft_features)
