"""Compile a checked :class:`Blueprint` into a LangGraph graph and the :class:`SynthGraph` around it.

State (JSON-native, so checkpoints work as for Python graphs): ``outputs`` (each node's latest output),
``history`` (every output per node), ``visits`` (runs per node), ``fanout`` (fan-out results tagged by
batch and index), ``next`` (each node's routing decision), plus ``seed``, ``steps``, ``error`` and
``stop_reason``. A node renders its role with the variables its templates use, runs it, and decides its
next node with the edges' conditions; a failed role call fails the row and routes to the end.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any

from langgraph.graph import END as LG_END
from langgraph.graph import START as LG_START
from langgraph.graph import StateGraph
from langgraph.types import Send

from synth.graph import BaseState, ModelSet, SynthGraph, failed
from synth.spec.check import Blueprint
from synth.spec.exports import export_formats
from synth.spec.model import END, START


def _merge(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any]:
    return {**(old or {}), **(new or {})}


def _extend(old: dict[str, list[Any]] | None, new: dict[str, list[Any]] | None) -> dict[str, list[Any]]:
    out = {key: list(values) for key, values in (old or {}).items()}
    for key, values in (new or {}).items():
        out.setdefault(key, []).extend(values)
    return out


class SpecState(BaseState, total=False):
    outputs: Annotated[dict[str, Any], _merge]
    history: Annotated[dict[str, list[Any]], _extend]
    fanout: Annotated[dict[str, list[Any]], _extend]
    next: Annotated[dict[str, str], _merge]


def _target(name: str) -> str:
    return {START: LG_START, END: LG_END}.get(name, name)


class _Compiler:
    def __init__(self, blueprint: Blueprint, models: ModelSet, options: Mapping[str, Any]) -> None:
        self.bp = blueprint
        self.models = models
        self.limits = {node: int(options[f"{node}.max_rounds"]) for node in blueprint.limits}
        for node, limit in self.limits.items():
            if limit < 1:
                raise ValueError(f"graph '{blueprint.spec.name}' option {node}.max_rounds must be >= 1")

    def variables(self, state: Mapping[str, Any], node: str | None, *, ran: bool = False) -> dict[str, Any]:
        """What templates and conditions see: seed fields, each node's latest output, built-ins."""
        seed = state.get("seed") or {}
        outputs = state.get("outputs") or {}
        visits = state.get("visits") or {}
        history = state.get("history") or {}
        values: dict[str, Any] = {
            **seed,
            "seed": seed,
            "history": {name: history.get(name, []) for name in self.bp.nodes},
            "visits": {name: visits.get(name, 0) for name in self.bp.nodes},
        }
        for name in self.bp.nodes:
            values[name] = self._fanout_results(state, name) if name in self.bp.fanout else outputs.get(name)
        values["round"] = visits.get(node, 0) + (0 if ran else 1) if node else 0
        for key in ("item", "index"):
            if key in state:
                values[key] = state[key]
        return values

    @staticmethod
    def _fanout_results(state: Mapping[str, Any], node: str) -> list[Any]:
        results = (state.get("fanout") or {}).get(node) or []
        if not results:
            return []
        batch = max(r["batch"] for r in results)
        return [r["output"] for r in sorted(results, key=lambda r: r["index"]) if r["batch"] == batch]

    def choose(self, node: str, values: Mapping[str, Any], visits: int) -> tuple[str, str]:
        """(next node or END, stop reason): the first edge whose condition holds; at max_rounds only exits."""
        edges = self.bp.edges.get(node, [])
        if not edges:
            return END, ""
        limit = self.limits.get(node)
        at_limit = limit is not None and visits >= limit
        for edge in edges:
            if edge.when is None or edge.when(values):
                if at_limit and edge.to not in self.bp.exits[node]:
                    break
                return edge.to, ""
        if at_limit:
            for edge in edges:
                if edge.to in self.bp.exits[node] and (edge.when is None or edge.when(values)):
                    return edge.to, f"max_rounds ({limit}) reached at node {node}"
            return END, f"max_rounds ({limit}) reached at node {node}"
        return END, f"no edge condition held after node {node}"

    def node(self, name: str) -> Any:
        """The node's function. A ``partial`` of one method, not a closure per node: LangGraph disassembles
        every plain function it is given to look for subgraphs (~2 ms a node: 19 s for 10k nodes)."""
        return functools.partial(self._run_node, name)

    async def _run_node(self, name: str, state: dict[str, Any]) -> dict[str, Any]:
        role = self.bp.role_of(name)
        needs = self.bp.needs[name]
        if state.get("error"):
            return {}
        values = self.variables(state, name)
        step = await role.run(self.models.for_role(role.name), node=name, **{k: values[k] for k in needs})
        if not step.ok:
            return failed(step)
        output = step.output if role.output is not None else {"text": step.raw}
        update: dict[str, Any] = {"steps": [step.as_state()], "history": {name: [output]}}
        if name in self.bp.fanout:
            tag = {"batch": state["batch"], "index": state["index"], "output": output}
            return {**update, "fanout": {name: [tag]}}
        visits = (state.get("visits") or {}).get(name, 0) + 1
        after = {
            **state,
            "outputs": {**(state.get("outputs") or {}), name: output},
            "visits": {**(state.get("visits") or {}), name: visits},
        }
        try:
            target, reason = self.choose(name, self.variables(after, name, ran=True), visits)
        except TypeError as exc:  # e.g. `judge.score > 3` while score is null
            message = f"node '{name}': an edge condition failed to evaluate: {exc}"
            return {**update, "error": message, "stop_reason": message}
        update.update(outputs={name: output}, visits={name: 1}, next={name: target})
        if reason:
            update["stop_reason"] = reason
        return update

    def router(self, source: str) -> Any:
        async def route(state: dict[str, Any]) -> Any:
            if state.get("error"):
                return LG_END
            if source == START:
                target, _ = self.choose(START, self.variables(state, None), 0)
            else:
                target = (state.get("next") or {}).get(source, END)
            return self.dispatch(target, state)

        route.__name__ = f"route_{source.lower() if source == START else source}"
        return route

    def dispatch(self, target: str, state: Mapping[str, Any]) -> Any:
        """A node name, or one Send per list item for a fan-out node (its successor for an empty list)."""
        if target not in self.bp.fanout:
            return _target(target)
        items = _lookup(self.variables(state, None), self.bp.fanout[target])
        if not isinstance(items, list):
            raise ValueError(
                f"node '{target}': for_each {'.'.join(self.bp.fanout[target])} is "
                f"{type(items).__name__}, not a list"
            )
        if not items:
            return _target(self.bp.edges[target][0].to)
        batch = sum((state.get("visits") or {}).values())
        shared = {k: state.get(k) for k in ("seed", "outputs", "history", "visits", "fanout")}
        return [
            Send(target, {**shared, "item": item, "index": i, "batch": batch}) for i, item in enumerate(items)
        ]

    def _plain_start(self) -> bool:
        edges = self.bp.edges[START]
        return len(edges) == 1 and edges[0].when is None and edges[0].to not in self.bp.fanout

    def targets(self, source: str) -> list[str]:
        edges = self.bp.edges.get(source, [])
        names = {e.to for e in edges}
        if source != START or any(e.when is not None for e in edges):
            names.add(END)  # a failed node, or no condition holding, ends the row
        names |= {self.bp.edges[t][0].to for t in names if t in self.bp.fanout}
        return sorted(_target(n) for n in names)

    def compile(self) -> Any:
        graph = StateGraph(SpecState)
        for name in self.bp.nodes:
            graph.add_node(name, self.node(name))
        for source in [START, *self.bp.nodes]:
            if source in self.bp.fanout:
                graph.add_edge(source, _target(self.bp.edges[source][0].to))
            elif source == START and self._plain_start():
                graph.add_edge(LG_START, self.bp.edges[START][0].to)
            elif source != START and self.targets(source) == [LG_END]:
                graph.add_edge(source, LG_END)  # every way on ends the row: no router to run (~40 us a row)
            else:
                graph.add_conditional_edges(_target(source), self.router(source), self.targets(source))
        return graph.compile()


def _lookup(values: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = values.get(path[0])
    for part in path[1:]:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def to_trajectory(blueprint: Blueprint, state: Mapping[str, Any]) -> dict[str, Any]:
    outputs = dict(state.get("outputs") or {})
    for name in blueprint.fanout:
        outputs[name] = _Compiler._fanout_results(state, name)
    result = {
        "outputs": outputs,
        "history": state.get("history") or {},
        "visits": state.get("visits") or {},
        "stop_reason": state.get("stop_reason") or "",
    }
    return {"result": result}


def synth_graph(blueprint: Blueprint) -> SynthGraph:
    """The SynthGraph of a spec; its version carries the spec's content hash (an edit changes the
    run fingerprint, so a changed spec never resumes an old run folder silently)."""
    spec = blueprint.spec

    def build(models: ModelSet, **options: Any) -> Any:
        return _Compiler(blueprint, models, options).compile()

    return SynthGraph(
        name=spec.name,
        description=spec.description or f"YAML graph from {blueprint.path.name}",
        version=f"{spec.version}+{blueprint.digest}",
        seed_model=blueprint.seed_model,
        roles=tuple(blueprint.roles.values()),
        build=build,
        to_trajectory=lambda state: to_trajectory(blueprint, state),
        exports=export_formats(blueprint),
        default_options={f"{node}.max_rounds": limit for node, limit in blueprint.limits.items()},
    )
