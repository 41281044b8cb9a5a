"""Helpers to wire roles into LangGraph, and the ``SynthGraph`` unit that registries and the runner use.

A :class:`SynthGraph` is one object per workflow: its name, the seed fields it needs (a pydantic model
that validates each input row), ``build(models, **options)`` returning a compiled LangGraph graph,
``to_trajectory`` turning a final state into the graph-specific ``result``/``scores``, and its export
formats. Graph state holds JSON-native values only, so any LangGraph checkpointer can serialise it.
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel
from typing_extensions import TypedDict

from synth import sampling
from synth.errors import ModelSpecError, OptionError
from synth.role import Role
from synth.trajectory import Step, Trajectory

#: LangGraph reducer for the accumulated steps: nodes return ``{"steps": [step.as_state()]}``.
StepList = Annotated[list[dict[str, Any]], operator.add]


class BaseState(TypedDict, total=False):
    """What every graph's state holds; graphs extend it."""

    seed: dict[str, Any]
    steps: StepList


@dataclass
class ModelSet:
    """The model client for each role: a default plus per-role overrides (``--model judge=SPEC``).

    ``sampling`` holds the run's generation settings (``--sampling``, see :mod:`synth.sampling`): keyed
    ``default`` (every role) or a role name; they win over the role's own.
    """

    default: Any
    by_role: dict[str, Any] = field(default_factory=dict)
    specs: dict[str, str] = field(default_factory=dict)
    sampling: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``--call-budget``: seconds one call may take in total, retries included (synth.models.budget).
    call_budget: float | None = None

    def for_role(self, role: str) -> Any:
        client = self.by_role.get(role, self.default)
        if client is None:
            raise ModelSpecError(f"no model for role '{role}': pass --model SPEC or --model {role}=SPEC")
        if self.call_budget is not None:
            from synth.models.budget import CallBudget

            client = CallBudget(client, self.call_budget)
        settings = sampling.for_role(self.sampling, role)
        return sampling.SamplingOverride(client, settings) if settings else client

    def spec_for(self, role: str) -> str:
        return self.specs.get(role, self.specs.get("default", ""))

    def clients(self) -> list[Any]:
        seen: dict[int, Any] = {}
        for client in [self.default, *self.by_role.values()]:
            if client is not None:
                seen.setdefault(id(client), client)
        return list(seen.values())


@dataclass(frozen=True)
class ExportFormat:
    """One export format: rows from a trajectory, with a schema so even an empty export is typed.

    ``features`` is a ``datasets.Features``-compatible dict built lazily (``datasets`` is heavy to
    import). ``empty_reason`` explains why a run yields no rows (e.g. "no round was accepted").
    """

    name: str
    description: str
    rows: Callable[[Trajectory], Iterable[dict[str, Any]]]
    features: Callable[[], Any]
    empty_reason: str = "no trajectory with status ok"


@dataclass(frozen=True)
class SynthGraph:
    """A built-in or user-defined role graph: how to build it, its seed and its exports (docs/graphs.md)."""

    name: str
    description: str
    version: str
    seed_model: type[BaseModel]
    roles: tuple[Role, ...]
    build: Callable[..., Any]
    to_trajectory: Callable[[Mapping[str, Any]], dict[str, Any]]
    exports: Mapping[str, ExportFormat]
    default_options: Mapping[str, Any] = field(default_factory=dict)

    def initial_state(self, seed: dict[str, Any]) -> dict[str, Any]:
        return {"seed": seed, "steps": []}

    def template_hashes(self) -> dict[str, str]:
        return {role.name: role.template_hash for role in self.roles}

    def resolve_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with the user's options; unknown names are an error that lists the known, and
        a value must have its default's type (``max_rounds=banana`` is refused here, not deep in a node)."""
        unknown = sorted(set(options) - set(self.default_options))
        if unknown:
            known = ", ".join(f"{k}={v!r}" for k, v in self.default_options.items()) or "none"
            raise OptionError(f"graph '{self.name}' has no option {', '.join(unknown)}; options: {known}")
        typed = {
            name: option_value(self.name, name, value, self.default_options[name])
            for name, value in options.items()
        }
        return {**self.default_options, **typed}


#: The type an option's default declares, as (accepted types, name in messages). None and other
#: defaults accept any value.
_OPTION_TYPES: tuple[tuple[type, tuple[type, ...], str], ...] = (
    (bool, (bool,), "true or false"),
    (int, (int,), "an integer"),
    (float, (int, float), "a number"),
    (str, (str,), "text"),
    (list, (list,), "a list"),
    (dict, (dict,), "a mapping"),
)


def option_value(graph: str, name: str, value: Any, default: Any) -> Any:
    """``value`` checked against the type of ``default`` (an int is fine where a float is expected)."""
    for kind, accepted, words in _OPTION_TYPES:
        if not isinstance(default, kind):
            continue
        if isinstance(value, accepted) and not (isinstance(value, bool) and kind is not bool):
            return value
        raise OptionError(
            f"--option {name}={value!r}: graph '{graph}' option {name} takes {words} "
            f"(default {default!r}), got {type(value).__name__}"
        )
    return value


def steps_of(state: Mapping[str, Any]) -> list[Step]:
    return [Step.model_validate(s) for s in state.get("steps", [])]


def failed(step: Step, *, fatal: bool = True) -> dict[str, Any]:
    """State update for a failed step: the step is kept; ``fatal`` marks the whole row as failed.

    Nodes never raise for a failed model call: they route to the end with the reason in state, so the
    trajectory keeps every step that ran (a failure is a row too, never a lost one).
    """
    reason = f"role '{step.role}' failed ({step.error_reason}): {step.error}"
    update: dict[str, Any] = {"steps": [step.as_state()], "stop_reason": reason}
    if fatal:
        update["error"] = reason
    return update


def unless_stopped(next_node: str, end: str) -> Callable[[Mapping[str, Any]], Awaitable[str]]:
    """Router: go to ``next_node`` unless an earlier node set ``stop_reason``.

    Async on purpose: LangGraph runs a sync router in a thread pool (a thread hop per edge per row).
    """

    async def route(state: Mapping[str, Any]) -> str:
        return end if state.get("stop_reason") else next_node

    route.__name__ = f"to_{next_node}_unless_stopped"
    return route
