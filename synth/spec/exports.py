"""Export formats of YAML graphs: ``sft`` always, ``dpo`` where the spec declares it.

A declared format renders its templates over the finished row (seed fields, each node's final output,
``history``, ``visits``); its optional ``when`` condition selects rows. Without an ``sft`` section,
``sft`` has one row per successful role call: the exact system / user / assistant turns the model saw
and wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from synth.dataset.export import dpo_features, sft_features
from synth.graph import ExportFormat
from synth.spec.expr import parse_condition
from synth.spec.model import DpoSpec, SftSpec
from synth.spec.templates import render
from synth.trajectory import Trajectory

if TYPE_CHECKING:
    from synth.spec.check import Blueprint


def row_variables(trajectory: Trajectory) -> dict[str, Any]:
    result = trajectory.result
    return {
        **trajectory.seed,
        **result.get("outputs", {}),
        "seed": trajectory.seed,
        "history": {name: result.get("history", {}).get(name, []) for name in result.get("outputs", {})},
        "visits": {name: result.get("visits", {}).get(name, 0) for name in result.get("outputs", {})},
    }


def _selected(when: str | None, values: dict[str, Any]) -> bool:
    return when is None or parse_condition(when)(values)


def _head(system: str | None, prompt: str, values: dict[str, Any]) -> list[dict[str, str]]:
    turns = [{"role": "system", "content": render(system, values)}] if system else []
    return [*turns, {"role": "user", "content": render(prompt, values)}]


def declared_sft(spec: SftSpec) -> Any:
    def rows(trajectory: Trajectory) -> Iterator[dict[str, Any]]:
        values = row_variables(trajectory)
        if not _selected(spec.when, values):
            return
        response = render(spec.response, values)
        if response:
            messages = [*_head(spec.system, spec.prompt, values), {"role": "assistant", "content": response}]
            yield {"id": trajectory.id, "messages": messages}

    return rows


def step_sft(trajectory: Trajectory) -> Iterator[dict[str, Any]]:
    """One row per successful role call, with the turns the model saw and its reply."""
    for index, step in enumerate(trajectory.steps):
        turns = [{"role": m["role"], "content": str(m.get("content") or "")} for m in step.messages]
        if step.ok and turns and turns[-1]["role"] == "assistant" and turns[-1]["content"]:
            yield {"id": f"{trajectory.id}:{index}", "messages": turns}


def declared_dpo(spec: DpoSpec) -> Any:
    def rows(trajectory: Trajectory) -> Iterator[dict[str, Any]]:
        values = row_variables(trajectory)
        if not _selected(spec.when, values):
            return
        chosen, rejected = render(spec.chosen, values), render(spec.rejected, values)
        if chosen and rejected and chosen != rejected:
            yield {
                "id": trajectory.id,
                "prompt": _head(spec.system, spec.prompt, values),
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }

    return rows


def export_formats(blueprint: Blueprint) -> dict[str, ExportFormat]:
    exports = blueprint.spec.exports
    formats = {
        "sft": ExportFormat(
            "sft", "messages: the spec's prompt -> response", declared_sft(exports.sft), sft_features
        )
        if exports.sft
        else ExportFormat(
            "sft", "messages: one row per role call (system, user, assistant)", step_sft, sft_features
        )
    }
    if exports.dpo:
        formats["dpo"] = ExportFormat(
            "dpo",
            "prompt/chosen/rejected from the spec's templates",
            declared_dpo(exports.dpo),
            dpo_features,
            empty_reason="no ok trajectory met the dpo `when` condition with distinct chosen and rejected",
        )
    return formats
