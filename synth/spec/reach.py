"""Reachability facts a spec's check needs, each in time about linear in the graph (10k nodes: ~0.5 s).

Kept apart from :mod:`synth.spec.check` (what is an error and how it reads) because this is plain graph
algorithms: one search from START, Tarjan's strongly connected components, early-exit searches.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence

from synth.spec.model import START


class Reach:
    """Reachability over a graph's nodes (END left out), each fact in time about linear in the graph.

    One search from START; strongly connected components (Tarjan) for "is this node in a cycle" and "which
    nodes share its cycle"; "does A run before B" by a search from A that stops at B and never enters a
    component that cannot lead to B. (The first version kept every node's reachable set: quadratic, a
    2k-node chain took 35 s and a 10k-node one did not load in 3 minutes.)
    """

    def __init__(self, nodes: Sequence[str], successors: dict[str, list[str]]) -> None:
        self.successors = successors
        self.nodes = list(nodes)
        self.from_start = self._reach(START)
        self._asked: set[str] = set()
        self._reached: dict[str, set[str]] = {}
        self.component, self.members = components(self.nodes, self.successors)
        self.cyclic = {
            node
            for node in self.nodes
            if len(self.members[self.component[node]]) > 1 or node in self.successors.get(node, [])
        }

    def _reach(self, start: str, skip: Iterable[str] = ()) -> set[str]:
        seen: set[str] = set()
        blocked = set(skip)
        stack = [t for t in self.successors.get(start, []) if t not in blocked]
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(t for t in self.successors.get(node, []) if t not in blocked)
        return seen

    def reaches(self, source: str, target: str) -> bool:
        """Whether a path of one edge or more leads from ``source`` to ``target`` (a node runs before it)."""
        if self.component[source] == self.component[target]:
            return source in self.cyclic
        # Tarjan numbers a component after every component it reaches: a higher number is out of reach.
        floor = self.component[target]
        if self.component[source] < floor:
            return False
        if source in self._asked:  # asked again (every node reads the first one): keep its whole reach
            if source not in self._reached:
                self._reached[source] = self._reach(source)
            return target in self._reached[source]
        self._asked.add(source)
        seen = {source}
        stack = [source]
        while stack:
            for nxt in self.successors.get(stack.pop(), []):
                if nxt == target:
                    return True
                if nxt not in seen and self.component[nxt] >= floor:
                    seen.add(nxt)
                    stack.append(nxt)
        return False

    def upstream(self, node: str) -> set[str]:
        """Every node that runs before ``node`` (for error messages: a reverse search)."""
        predecessors: dict[str, list[str]] = {}
        for source, targets in self.successors.items():
            if source != START:
                for target in targets:
                    predecessors.setdefault(target, []).append(source)
        seen: set[str] = set()
        stack = list(predecessors.get(node, []))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(predecessors.get(current, []))
        return seen

    def cycle_through(self, node: str, skip: set[str]) -> list[str] | None:
        """The shortest cycle through ``node`` that avoids ``skip``, as a node list, or None."""
        parent: dict[str, str | None] = {node: None}
        queue = collections.deque([node])
        while queue:
            current = queue.popleft()
            for nxt in self.successors.get(current, []):
                if nxt == node:
                    path = [current]
                    while (up := parent[path[-1]]) is not None:
                        path.append(up)
                    return [*reversed(path), node]
                if nxt not in parent and nxt not in skip:
                    parent[nxt] = current
                    queue.append(nxt)
        return None


def components(
    nodes: Sequence[str], successors: dict[str, list[str]]
) -> tuple[dict[str, int], list[list[str]]]:
    """Strongly connected components (Tarjan, iterative: a 10k-node chain is 10k deep): each node's
    component number, and the members of each. A component is numbered after all those it reaches."""
    known = set(nodes)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    component: dict[str, int] = {}
    members: list[list[str]] = []
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter([t for t in successors.get(root, []) if t in known]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter([t for t in successors.get(child, []) if t in known])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = len(members)
                    group.append(member)
                    if member == node:
                        break
                members.append(group)
    return component, members
