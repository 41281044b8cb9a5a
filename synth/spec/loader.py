"""Safe YAML loading that remembers where every mapping key and list item came from.

``yaml.SafeLoader`` already refuses ``!!python/...`` tags (no object construction from user text); the
subclass here also records line numbers, so later checks can say ``graph.yaml:12``, refuses duplicate
keys (plain YAML silently keeps the last one), and turns every YAML error into a :class:`SpecError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from synth.errors import SynthError


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


class _LineLoader(yaml.SafeLoader):
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
        data = yaml.load(text, Loader=_LineLoader)
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
