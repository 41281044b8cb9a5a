"""From a loaded YAML spec to a checked :class:`Blueprint`: every error names file:line and the node.

Checks, in order: the spec's shape (pydantic), role output schemas, role templates, nodes (unknown
role), edges (missing nodes, conditions in the safe expression language that name known nodes and
fields), reachability, fan-out nodes, loops (each cycle needs an exit and a node with ``max_rounds``),
and template variables (each must be a seed field, a built-in, or a node that runs upstream).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from synth.spec.expr import Condition, ExpressionError, parse_condition
from synth.spec.loader import MarkedDict, SpecError, line_of
from synth.spec.model import (
    BUILTIN_NAMES,
    EDGES_PER_NODE,
    END,
    FANOUT_NAMES,
    MAX_NODES,
    START,
    GraphSpec,
)
from synth.spec.reach import Reach, components
from synth.spec.schema import SchemaError, import_model, model_from_schema
from synth.spec.templates import SpecRole, template_names
from synth.trajectory import content_hash

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: Built-ins, and the state keys of compiled graphs (LangGraph refuses a node named like a state key).
_RESERVED = {
    START,
    END,
    *BUILTIN_NAMES,
    *FANOUT_NAMES,
    "steps",
    "outputs",
    "fanout",
    "next",
    "error",
    "stop_reason",
}


@dataclass(frozen=True)
class Edge:
    to: str
    when: Condition | None
    line: int


@dataclass
class Blueprint:
    """A checked spec, ready to compile: roles, edges by source, fan-outs, loop limits, template needs."""

    spec: GraphSpec
    path: Path
    digest: str
    roles: dict[str, SpecRole]
    seed_model: type[BaseModel]
    seed_fields: set[str]
    edges: dict[str, list[Edge]] = field(default_factory=dict)
    fanout: dict[str, tuple[str, ...]] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    exits: dict[str, set[str]] = field(default_factory=dict)
    needs: dict[str, set[str]] = field(default_factory=dict)

    @property
    def nodes(self) -> list[str]:
        return list(self.spec.nodes)

    def role_of(self, node: str) -> SpecRole:
        return self.roles[self.spec.nodes[node].role]


class _Checker:
    def __init__(self, path: Path, raw: MarkedDict) -> None:
        self.path, self.raw = path, raw

    def fail(self, where: Sequence[Any], message: str, node: str | None = None) -> SpecError:
        subject = f"node '{node}': " if node else ""
        return SpecError(f"{self.path}:{line_of(self.raw, where)}: {subject}{message}")

    def shape(self) -> GraphSpec:
        try:
            return GraphSpec.model_validate(self.raw)
        except ValidationError as exc:
            lines = []
            for error in exc.errors()[:5]:
                loc = tuple(error["loc"])
                lines.append(
                    f"{self.path}:{line_of(self.raw, loc)}: "
                    f"{'.'.join(map(str, loc)) or 'spec'}: {error['msg']}"
                )
            raise SpecError("\n".join(lines)) from None


def check(path: Path, raw: MarkedDict) -> Blueprint:
    """Validate ``raw`` (loaded from ``path``) and return its Blueprint, or raise the first SpecError."""
    checker = _Checker(path, raw)
    _size_limits(checker, raw)
    spec = checker.shape()
    seed_schema = spec.seed_schema()
    for name in seed_schema["properties"]:
        if not _IDENTIFIER.fullmatch(name) or name in _RESERVED:
            raise checker.fail(
                ("seed",), f"seed field {name!r} must be an identifier and not one of {sorted(_RESERVED)}"
            )
    try:
        seed_model = model_from_schema(f"{spec.name}_seed", seed_schema, extra="allow")
    except SchemaError as exc:
        raise checker.fail(("seed", *exc.path[1:]), str(exc)) from None
    blueprint = Blueprint(
        spec=spec,
        path=path,
        digest=content_hash(raw),
        roles=_roles(checker, spec),
        seed_model=seed_model,
        seed_fields=set(seed_schema["properties"]),
    )
    _nodes(checker, blueprint)
    _edges(checker, blueprint)
    successors = {source: [e.to for e in edges if e.to != END] for source, edges in blueprint.edges.items()}
    graph = Reach(blueprint.nodes, successors)
    _reachability(checker, blueprint, graph)
    _fanouts(checker, blueprint, graph)
    _loops(checker, blueprint, graph)
    _templates(checker, blueprint, graph)
    _export_templates(checker, blueprint)
    return blueprint


def _size_limits(checker: _Checker, raw: MarkedDict) -> None:
    """Refuse a graph over ``max_nodes`` (default :data:`MAX_NODES`) before anything walks it."""
    limit = raw.get("max_nodes", MAX_NODES)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise checker.fail(("max_nodes",), f"max_nodes must be a whole number >= 1, not {limit!r}")
    nodes, edges = raw.get("nodes"), raw.get("edges")
    count = len(nodes) if isinstance(nodes, dict) else 0
    if count > limit:
        raise checker.fail(
            ("nodes",),
            f"the graph has {count} nodes, over the limit of {limit} (max_nodes, default {MAX_NODES}); "
            f"raise it with `max_nodes: {count}` at the top of the spec",
        )
    count = len(edges) if isinstance(edges, list) else 0
    if count > EDGES_PER_NODE * limit:
        raise checker.fail(
            ("edges",),
            f"the graph has {count} edges, over the limit of {EDGES_PER_NODE * limit} ({EDGES_PER_NODE} x "
            f"max_nodes); raise it with `max_nodes: {-(-count // EDGES_PER_NODE)}` at the top of the spec",
        )


def _roles(checker: _Checker, spec: GraphSpec) -> dict[str, SpecRole]:
    roles: dict[str, SpecRole] = {}
    for name, role in spec.roles.items():
        where = ("roles", name)
        output: type[BaseModel] | None = None
        try:
            if isinstance(role.output, dict):
                output = model_from_schema(name, role.output)
            elif isinstance(role.output, str):
                output = import_model(role.output)
        except SchemaError as exc:
            raise checker.fail((*where, "output", *exc.path), f"role '{name}' output: {exc}") from None
        for which in ("instructions", "prompt"):
            try:
                template_names(getattr(role, which))
            except ValueError as exc:
                raise checker.fail((*where, which), f"role '{name}' {which}: {exc}") from None
        try:
            roles[name] = SpecRole(
                name=name,
                instructions=role.instructions,
                prompt=role.prompt,
                output=output,
                sampling=role.sampling,
                description=role.description,
            )
        except ValidationError as exc:
            raise checker.fail(where, f"role '{name}': {exc.errors()[0]['msg']}") from None
    return roles


def _nodes(checker: _Checker, blueprint: Blueprint) -> None:
    for name, node in blueprint.spec.nodes.items():
        where = ("nodes", name)
        if not _IDENTIFIER.fullmatch(name) or name in _RESERVED or name in blueprint.seed_fields:
            raise checker.fail(
                where,
                "node names must be identifiers (letters, digits, _), not a seed field or a built-in name",
                name,
            )
        if node.role not in blueprint.roles:
            raise checker.fail(
                (*where, "role"),
                f"unknown role '{node.role}'; roles defined under roles: {', '.join(blueprint.roles)}",
                name,
            )
        if node.max_rounds is not None:
            blueprint.limits[name] = node.max_rounds
        if node.for_each is not None:
            blueprint.fanout[name] = tuple(node.for_each.split("."))


def _edges(checker: _Checker, blueprint: Blueprint) -> None:
    nodes = set(blueprint.nodes)
    for index, edge in enumerate(blueprint.spec.edges):
        where = ("edges", index)
        if edge.source != START and edge.source not in nodes:
            raise checker.fail(
                (*where, "from"), f"edge from missing node '{edge.source}'; nodes: {', '.join(nodes)}"
            )
        if edge.to != END and edge.to not in nodes:
            hint = " (the graph's end is END, in capitals)" if edge.to.lower() == "end" else ""
            raise checker.fail(
                (*where, "to"), f"edge to missing node '{edge.to}'{hint}; nodes: {', '.join(sorted(nodes))}"
            )
        condition = None
        if edge.when is not None:
            try:
                condition = parse_condition(edge.when)
            except ExpressionError as exc:
                raise checker.fail(
                    (*where, "when"), str(exc), None if edge.source == START else edge.source
                ) from None
            _condition_names(checker, blueprint, condition, (*where, "when"), edge.source)
        line = line_of(checker.raw, where)
        blueprint.edges.setdefault(edge.source, []).append(Edge(edge.to, condition, line))


def _condition_names(
    checker: _Checker, blueprint: Blueprint, condition: Condition, where: Sequence[Any], node: str | None
) -> None:
    unknown = {
        n for n in condition.names if n not in blueprint.seed_fields and n not in BUILTIN_NAMES
    } - blueprint.spec.nodes.keys()
    for name in sorted(unknown):  # the whole list of names is built only to show it
        known = blueprint.seed_fields | set(blueprint.nodes) | BUILTIN_NAMES
        raise checker.fail(
            where,
            f"condition {condition.source!r} names '{name}', which is no node, seed field or built-in "
            f"({', '.join(sorted(known))})",
            node if node != START else None,
        )
    for chain in condition.paths:
        root, fields = chain[0], chain[1:]
        if root in blueprint.spec.nodes and root not in blueprint.fanout and fields:
            role = blueprint.role_of(root)
            names = set(role.output.model_fields) if role.output else {"text"}
            if fields[0] not in names:
                raise checker.fail(
                    where,
                    f"condition {condition.source!r}: node '{root}' (role {role.name}) has no output field "
                    f"'{fields[0]}'; fields: {', '.join(sorted(names))}",
                    node if node != START else None,
                )


def _reachability(checker: _Checker, blueprint: Blueprint, graph: Reach) -> None:
    if START not in blueprint.edges:
        raise checker.fail(("edges",), "no edge leaves START: add `- {from: START, to: FIRST_NODE}`")
    for name in blueprint.nodes:
        if name not in graph.from_start:
            raise checker.fail(
                ("nodes", name), "not reachable from START: add an edge to it or remove it", name
            )


def _fanouts(checker: _Checker, blueprint: Blueprint, graph: Reach) -> None:
    for name, path in blueprint.fanout.items():
        where = ("nodes", name, "for_each")
        outgoing = blueprint.edges.get(name, [])
        if len(outgoing) != 1 or outgoing[0].when is not None:
            raise checker.fail(
                where,
                "a fan-out node needs exactly one outgoing edge, without `when` (where its results join)",
                name,
            )
        if name in blueprint.limits:
            raise checker.fail(
                where, "a fan-out node cannot carry max_rounds: put the limit on another node", name
            )
        root = path[0]
        if root in blueprint.spec.nodes:
            if not graph.reaches(root, name) or root in blueprint.fanout:
                raise checker.fail(where, f"for_each reads node '{root}', which does not run before it", name)
            role = blueprint.role_of(root)
            names = set(role.output.model_fields) if role.output else {"text"}
            if len(path) < 2 or path[1] not in names:
                raise checker.fail(
                    where,
                    f"for_each {'.'.join(path)!r}: node '{root}' has output fields {sorted(names)}",
                    name,
                )
        elif root not in blueprint.seed_fields:
            raise checker.fail(
                where, f"for_each {'.'.join(path)!r} names no seed field or upstream node", name
            )


def _loops(checker: _Checker, blueprint: Blueprint, graph: Reach) -> None:
    for name in blueprint.nodes:
        in_cycle = set(graph.members[graph.component[name]]) if name in graph.cyclic else set()
        blueprint.exits[name] = {
            e.to for e in blueprint.edges.get(name, []) if e.to == END or e.to not in in_cycle
        }
    limited = set(blueprint.limits)
    free = [node for node in blueprint.nodes if node not in limited]
    free_successors = {s: [t for t in ts if t not in limited] for s, ts in graph.successors.items()}
    free_component, free_members = components(free, free_successors)
    leaves: dict[int, bool] = {}  # per component: does an edge leave it (or a member end the row)?
    for name in blueprint.nodes:
        if name not in graph.cyclic:
            continue
        number = graph.component[name]
        if number not in leaves:
            members = set(graph.members[number])
            leaves[number] = any(
                e.to == END or e.to not in members for m in members for e in blueprint.edges.get(m, [])
            ) or any(not blueprint.edges.get(m) for m in members)
        if not leaves[number]:
            cycle = graph.cycle_through(name, skip=set()) or [name, name]
            raise checker.fail(
                ("nodes", name),
                f"cycle {' -> '.join(cycle)} has no exit: add an edge with `when:` that leaves it "
                "(e.g. to END)",
            )
        if name in limited:
            continue
        in_free_cycle = len(free_members[free_component[name]]) > 1 or name in free_successors.get(name, [])
        if in_free_cycle:
            unlimited = graph.cycle_through(name, skip=limited) or [name, name]
            raise checker.fail(
                ("nodes", name),
                f"cycle {' -> '.join(unlimited)} has no round limit: set `max_rounds: N` on one of its nodes "
                "(at the limit that node only takes edges that leave the loop)",
            )


def _templates(checker: _Checker, blueprint: Blueprint, graph: Reach) -> None:
    base = blueprint.seed_fields | BUILTIN_NAMES
    for name, node in blueprint.spec.nodes.items():
        role = blueprint.role_of(name)
        local = base | FANOUT_NAMES if name in blueprint.fanout else base
        needs: set[str] = set()
        for which in ("instructions", "prompt"):
            names = template_names(getattr(role, which))
            needs |= names
            unknown = [
                n
                for n in names
                if n not in local and not (n in blueprint.spec.nodes and graph.reaches(n, name))
            ]
            allowed = local | graph.upstream(name) if unknown else local
            for missing in sorted(unknown):
                where = ("roles", node.role, which)
                if missing in blueprint.spec.nodes:
                    raise checker.fail(
                        where,
                        f"template variable '{missing}' (role {role.name}) is node '{missing}', "
                        "which does not run "
                        f"before node '{name}': no path leads from it to '{name}'",
                        name,
                    )
                raise checker.fail(
                    where,
                    f"template variable '{missing}' (role {role.name}) is provided by no upstream node "
                    "or seed "
                    f"field; available here: {', '.join(sorted(allowed))}",
                    name,
                )
        blueprint.needs[name] = needs


def _export_templates(checker: _Checker, blueprint: Blueprint) -> None:
    allowed = blueprint.seed_fields | set(blueprint.nodes) | BUILTIN_NAMES
    for kind in ("sft", "dpo"):
        spec = getattr(blueprint.spec.exports, kind)
        if spec is None:
            continue
        for key, value in spec.model_dump(exclude_none=True).items():
            where = ("exports", kind, key)
            if key == "when":
                try:
                    _condition_names(checker, blueprint, parse_condition(value), where, None)
                except ExpressionError as exc:
                    raise checker.fail(where, str(exc)) from None
                continue
            try:
                names = template_names(value)
            except ValueError as exc:
                raise checker.fail(where, f"export {kind}.{key}: {exc}") from None
            for missing in sorted(names - allowed):
                raise checker.fail(
                    where,
                    f"export {kind}.{key}: template variable '{missing}' is no node, seed field or built-in",
                )
