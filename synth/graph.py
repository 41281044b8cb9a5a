"""Helpers to wire roles into LangGraph, and the ``SynthGraph`` unit that registries and the runner use.

A :class:`SynthGraph` is one object per workflow: its name, the seed fields it needs (a pydantic model
that validates each input row), ``build(models, **options)`` returning a compiled LangGraph graph,
``to_trajectory`` turning a final state into the graph-specific ``result``/``scores``, and its export
formats. Graph state holds JSON-native values only, so any LangGraph checkpointer can serialise it.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, ConfigDict, Field, create_model
from typing_extensions import TypedDict

from synth import sampling
from synth.errors import ModelSpecError, OptionError, SynthError
from synth.role import Role
from synth.trajectory import Step, Trajectory

#: LangGraph reducer for the accumulated steps: nodes return ``{"steps": [step.as_state()]}``.
StepList = Annotated[list[dict[str, Any]], operator.add]
T = TypeVar("T")
#: A state list that nodes append to: a node returns ``{"answers": [new]}`` and the list grows by one.
Appended = Annotated[list[T], operator.add]


def first_set(old: str | None, new: str | None) -> str | None:
    """Reducer of ``error`` / ``stop_reason``: the first non-empty value wins (parallel branches may both
    fail). None when there is none: the runner treats any non-empty ``error`` as a failed row."""
    return old or new or None


def add_counts(old: dict[str, int] | None, new: dict[str, int] | None) -> dict[str, int]:
    """Reducer of ``visits``: per-node counts add up (a node returns ``{"visits": {name: 1}}``)."""
    out = dict(old or {})
    for key, value in (new or {}).items():
        out[key] = out.get(key, 0) + value
    return out


class BaseState(TypedDict, total=False):
    """What every graph's state holds; graphs extend it with their own keys, never redeclare these.

    ``error`` marks the row as failed, ``stop_reason`` says why the graph ended early (both written by
    :func:`failed`, read by the routers and the runner); ``visits`` counts the runs of the nodes a loop
    counts (:func:`chain` with ``max_rounds``, and every node of a YAML graph).
    """

    seed: dict[str, Any]
    steps: StepList
    error: Annotated[str | None, first_set]
    stop_reason: Annotated[str | None, first_set]
    visits: Annotated[dict[str, int], add_counts]


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


def seed_fields(*names: str) -> type[BaseModel]:
    """A seed model for rows that need these non-empty text fields (other fields are kept): the Python
    form of a YAML graph's ``seed: [name, ...]``."""
    fields: dict[str, Any] = {name: (str, Field(min_length=1)) for name in names}
    return create_model("Seed", __config__=ConfigDict(extra="allow"), **fields)


def result_from(*keys: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A ``to_trajectory`` whose ``result`` holds ``keys``: each from the final state, else from the seed
    row, else None."""

    def to_trajectory(state: Mapping[str, Any]) -> dict[str, Any]:
        return {"result": {k: state[k] if k in state else state["seed"].get(k) for k in keys}}

    return to_trajectory


@dataclass(frozen=True)
class SynthGraph:
    """A built-in or user-defined role graph: how to build it, its seed and its exports (docs/graphs.md).

    ``default_options`` are the keyword defaults of ``build`` unless given (declare them once, in
    ``build``'s signature). ``result_model`` is the pydantic model of a trajectory's ``result``
    (``trajectory.result_as(graph.result_model)``); ``report_section`` is the factory of the graph's own
    report section (``(RunContext) -> Section``, see :mod:`synth.report.model`), or its ``module:Name``
    (imported only when a report is written), so neither the engine nor the report knows a graph by name.
    """

    name: str
    description: str
    seed_model: type[BaseModel]
    roles: tuple[Role, ...]
    build: Callable[..., Any]
    to_trajectory: Callable[[Mapping[str, Any]], dict[str, Any]]
    version: str = "1"
    exports: Mapping[str, ExportFormat] = field(default_factory=dict)
    default_options: Mapping[str, Any] = field(default_factory=dict)
    result_model: type[BaseModel] | None = None
    report_section: Callable[[Any], Any] | str | None = None

    def __post_init__(self) -> None:
        declared = build_defaults(self.build)
        if not self.default_options:
            object.__setattr__(self, "default_options", declared)
            return
        clash = {k for k, v in declared.items() if k in self.default_options and self.default_options[k] != v}
        if clash:
            raise ValueError(
                f"graph '{self.name}': option(s) {', '.join(sorted(clash))} have one default in build() and "
                "another in default_options; declare defaults once, in build()'s signature"
            )

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


def build_defaults(build: Callable[..., Any]) -> dict[str, Any]:
    """The options ``build(models, *, name=default, ...)`` declares, with their defaults."""
    try:
        parameters = list(inspect.signature(build).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable: no options to read
        return {}
    return {
        p.name: p.default
        for p in parameters[1:]
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is not p.empty
    }


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


# -- helpers for writing graphs (docs/graphs.md) ---------------------------------------------------------
#: A node: an async function from the state (a mapping) to the state update it returns.
Node = Callable[[Any], Awaitable[dict[str, Any]]]
#: The role's inputs from the state; the state update from the role's output (and the state).
Inputs = Callable[[Mapping[str, Any]], Mapping[str, Any]]
Update = Callable[[dict[str, Any], Mapping[str, Any]], Mapping[str, Any]]


def role_node(
    role: Role,
    models: ModelSet,
    update: Update | None = None,
    *,
    inputs: Inputs | None = None,
    defaults: Mapping[str, Any] | None = None,
    node: str = "",
    fatal: bool | Callable[[Mapping[str, Any]], bool] = True,
) -> Node:
    """A node that runs ``role`` once: what every role node repeats, written once.

    The role's inputs are ``inputs(state)`` when given; by default each variable its templates read
    (:attr:`Role.variables`) is taken from the state, else from the seed row, else from ``defaults``. The
    node returns ``{"steps": [step], **update(output, state)}``; ``update`` defaults to the output's fields
    (a free-text role's output is ``{"text": raw}``). A failed call returns :func:`failed` (the row fails
    when ``fatal``, which may depend on the state), so the routers of :func:`chain` end the row. ``node``
    names the step's node (default: the role's name).
    """
    read = inputs or _state_inputs(role, defaults or {})

    async def run(state: Mapping[str, Any]) -> dict[str, Any]:
        step = await role.run(models.for_role(role.name), node=node, **read(state))
        if not step.ok:
            return failed(step, fatal=fatal(state) if callable(fatal) else fatal)
        output = (step.output if role.output is not None else {"text": step.raw}) or {}
        return {"steps": [step.as_state()], **(update(output, state) if update is not None else output)}

    run.__name__ = node or role.name
    return run


def _state_inputs(role: Role, defaults: Mapping[str, Any]) -> Inputs:
    def read(state: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in role.variables:
            for source in (state, state["seed"], defaults):
                if name in source:
                    values[name] = source[name]
                    break
            else:
                raise SynthError(
                    f"role '{role.name}' reads '{name}', which neither the state, the seed row nor the "
                    "node's defaults hold: pass inputs=... or defaults={...} to role_node"
                )
        return values

    return read


def chain(
    state: type[Any],
    nodes: Mapping[str, Node],
    *,
    loop_from: str | None = None,
    check_after: str | None = None,
    until: Callable[[Mapping[str, Any]], bool] | None = None,
    max_rounds: int | None = None,
) -> Any:
    """The compiled graph START -> ``nodes`` in order -> END; every edge ends the row once a node set
    ``stop_reason`` (a failed call), so no node checks for an earlier failure.

    A loop: ``loop_from`` names the node the last one goes back to. It exits after ``check_after``
    (default: the last node) once ``until(state)`` holds or ``loop_from`` has run ``max_rounds`` times
    (counted in ``state["visits"]``).
    """
    names = list(nodes)
    check = check_after or names[-1]
    for name, what in ((loop_from, "loop_from"), (check_after, "check_after")):
        if name is not None and name not in nodes:
            raise ValueError(f"chain: {what}={name!r} is not one of the nodes {names}")
    if (until is not None or max_rounds is not None) and loop_from is None:
        raise ValueError("chain: until/max_rounds end a loop; name the node it repeats from with loop_from")
    graph: Any = StateGraph(state)
    for name, function in nodes.items():
        counted = max_rounds is not None and name == loop_from
        graph.add_node(name, _counted(name, function) if counted else function)
    graph.add_edge(START, names[0])
    for here, there in zip(names, [*names[1:], loop_from or END], strict=True):
        route = unless_stopped(there, END)
        if here == check and (until is not None or max_rounds is not None):
            route = _loop_exit(there, loop_from or "", until, max_rounds)
        if there == END:  # the last node of a chain without a loop: every way on ends the row, no router
            graph.add_edge(here, END)
        else:
            graph.add_conditional_edges(here, route, list(dict.fromkeys([there, END])))
    return graph.compile()


def _counted(name: str, function: Node) -> Node:
    """``function`` that also counts its run in ``visits`` (the round count of a loop)."""

    async def run(state: Mapping[str, Any]) -> dict[str, Any]:
        return {**await function(state), "visits": {name: 1}}

    run.__name__ = getattr(function, "__name__", name)
    return run


def _loop_exit(
    next_node: str, loop_from: str, until: Callable[[Mapping[str, Any]], bool] | None, max_rounds: int | None
) -> Callable[[Mapping[str, Any]], Awaitable[str]]:
    """Router of a loop's exit: END when stopped, when ``until`` holds or after ``max_rounds`` rounds."""

    async def route(state: Mapping[str, Any]) -> str:
        rounds = (state.get("visits") or {}).get(loop_from, 0)
        done = state.get("stop_reason") or (until is not None and until(state))
        return END if done or (max_rounds is not None and rounds >= max_rounds) else next_node

    route.__name__ = f"to_{next_node}_until_done"
    return route
