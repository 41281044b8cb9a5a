"""CoEvol's export formats: SFT on the evolved response, DPO of evolved over original."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from synth.export import dpo_features, sft_features, user_turn
from synth.graph import ExportFormat
from synth.trajectory import Trajectory


def sft_rows(trajectory: Trajectory) -> Iterator[dict[str, Any]]:
    result = trajectory.result
    if not result.get("evolved"):
        return
    yield {
        "id": trajectory.id,
        "messages": [
            user_turn(result["instruction"], result["input"]),
            {"role": "assistant", "content": result["evolved"]},
        ],
    }


def dpo_rows(trajectory: Trajectory) -> Iterator[dict[str, Any]]:
    """One pair per row with at least one accepted round: the final evolved response over the original."""
    result = trajectory.result
    if result.get("accepted_rounds", 0) < 1 or result.get("evolved") == result.get("original"):
        return
    yield {
        "id": trajectory.id,
        "prompt": [user_turn(result["instruction"], result["input"])],
        "chosen": [{"role": "assistant", "content": result["evolved"]}],
        "rejected": [{"role": "assistant", "content": result["original"]}],
    }


EXPORTS = {
    "sft": ExportFormat("sft", "messages: instruction -> evolved response", sft_rows, sft_features),
    "dpo": ExportFormat(
        "dpo",
        "prompt/chosen/rejected: evolved (chosen) over original (rejected)",
        dpo_rows,
        dpo_features,
        empty_reason="no round was accepted by the judge in any ok trajectory",
    ),
}
