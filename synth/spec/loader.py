"""Safe YAML loading that remembers where every mapping key and list item came from.

``yaml.SafeLoader`` already refuses ``!!python/...`` tags (no object construction from user text); the
subclass here also records line numbers, so later checks can say ``graph.yaml:12``, refuses duplicate
keys (plain YAML silently keeps the last one), and turns every YAML error into a :class:`SpecError`.

Hostile files: the text is composed first (libyaml, linear in its size), then the node graph is measured
before anything is built. Aliases may add at most :data:`MAX_ALIAS_VALUES` values (a "billion laughs"
file of 1 kB expands to 10^9 values, which any later walk - validation, hashing - would materialise);
a recursive alias is refused; libyaml itself refuses nesting deeper than 1000 levels.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from synth.errors import SynthError

#: Values that aliases (``*name``) may add to a spec once expanded; ``SYNTH_MAX_YAML_ALIAS_VALUES`` raises it.
MAX_ALIAS_VALUES = 10_000
ALIAS_LIMIT_ENV = "SYNTH_MAX_YAML_ALIAS_VALUES"


class SpecError(SynthError):
    """A YAML graph spec is invalid; the message names file:line, the node or role, and the fix."""


class MarkedDict(dict[str, Any]):
    """A mapping from YAML that knows its own line and the line of each key."""

    line: int = 0
    key_lines: dict[Any, int]


class MarkedList(list[Any]):
    """A sequence from YAML that knows its own line and the line of each item."""

    line: int = 0
    item_lines: list[int]


_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~50x faster on a 10k-node spec


class _LineLoader(_Base):  # type: ignore[misc]
    """SafeLoader whose maps and lists carry line numbers (1-based)."""


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> Iterator[MarkedDict]:
    data = MarkedDict()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in data.key_lines:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {data.key_lines[key]})",
                key_node.start_mark,
            )
        data.key_lines[key] = key_node.start_mark.line + 1
        data[key] = loader.construct_object(value_node, deep=True)


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode) -> Iterator[MarkedList]:
    data = MarkedList()
    data.line = node.start_mark.line + 1
    data.item_lines = [child.start_mark.line + 1 for child in node.value]
    yield data
    data.extend(loader.construct_object(child, deep=True) for child in node.value)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def load_yaml(path: Path) -> MarkedDict:
    """The spec file as marked dicts and lists; any YAML problem is a SpecError with file:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read graph spec {path}: {exc.strerror}") from None
    try:
        loader = _LineLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_aliases(node, alias_limit())
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except _AliasError as exc:
        raise SpecError(f"{path}:{exc.line}: {exc}") from None
    except RecursionError:
        raise SpecError(f"{path}: the YAML is nested too deeply to be a graph spec") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = exc.problem or str(exc)
        if "python/" in problem or "could not determine a constructor" in problem:
            problem += " (Python tags are not allowed in graph specs: write plain YAML values)"
        raise SpecError(f"{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, MarkedDict):
        raise SpecError(
            f"{path}:1: a graph spec is a YAML mapping (name, roles, nodes, edges), not {type(data).__name__}"
        )
    return data


def alias_limit() -> int:
    """:data:`MAX_ALIAS_VALUES`, or the ``SYNTH_MAX_YAML_ALIAS_VALUES`` environment variable."""
    value = os.environ.get(ALIAS_LIMIT_ENV, "")
    if not value:
        return MAX_ALIAS_VALUES
    if not value.isdigit():
        raise SpecError(f"{ALIAS_LIMIT_ENV}={value!r} must be a whole number of values")
    return int(value)


class _AliasError(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def _check_aliases(root: yaml.Node, limit: int) -> None:
    """Refuse a node graph whose aliases expand to more than ``limit`` extra values, or loop.

    Composed YAML shares one node object per anchor, so each node is measured once (memoised) and every
    further reference to it (an alias) adds its expanded size: linear in the file, whatever it expands to.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    added = 0

    def size(node: yaml.Node) -> int:
        nonlocal added
        key = id(node)
        if key in open_nodes:
            raise _AliasError(
                "a recursive alias (a value that contains itself) cannot be loaded", _line(node)
            )
        if key in sizes:  # a second reference: an alias
            added += sizes[key]
            if added > limit:
                raise _AliasError(
                    f"YAML aliases expand to more than {limit} values (the limit; the anchor of this value "
                    f"alone is {sizes[key]}): write the values out, or raise the limit with the environment "
                    f"variable {ALIAS_LIMIT_ENV}",
                    _line(node),
                )
            return sizes[key]
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1 if node.start_mark is not None else 1


def line_of(tree: Any, path: Sequence[Any]) -> int:
    """The line of the deepest element of ``path`` (keys / list indexes) found in the loaded tree."""
    line = getattr(tree, "line", 1)
    node = tree
    for part in path:
        if isinstance(node, MarkedDict) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, MarkedList) and isinstance(part, int) and 0 <= part < len(node):
            line = node.item_lines[part]
            node = node[part]
        else:
            break
    return line
