"""A small, safe expression language for edge conditions: ``judge.verdict == "accept" and round < 3``.

Parsed with Python's ``ast`` and checked against a whitelist - comparisons, ``and``/``or``/``not``,
names, attribute access (``node.field``), constant subscripts (``items[0]``), literals and tuples/lists
of literals - then evaluated by walking the tree. Nothing is ever passed to ``eval``; calls, lambdas,
comprehensions and any name or attribute starting with ``_`` (``__import__``, ``__class__``) are refused
when the spec loads. Attribute access reads dict keys, so conditions see node outputs as plain data.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: lambda a, b: a is b,
    ast.IsNot: lambda a, b: a is not b,
}
_ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.Compare,
    ast.Name,
    ast.Load,
    ast.Attribute,
    ast.Subscript,
    ast.Constant,
    ast.Tuple,
    ast.List,
    *_COMPARE,
)


class ExpressionError(ValueError):
    """A condition is not in the expression language (the message says what is refused)."""


@dataclass(frozen=True)
class Condition:
    """A parsed condition; ``names`` are its free variables, ``paths`` its ``name.field...`` chains."""

    source: str
    tree: ast.Expression
    names: frozenset[str]
    paths: tuple[tuple[str, ...], ...]

    def __call__(self, variables: Mapping[str, Any]) -> bool:
        return bool(_evaluate(self.tree.body, variables))


def parse_condition(source: str) -> Condition:
    """Parse and check ``source``; raises :class:`ExpressionError` naming the refused construct."""
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse condition {source!r}: {exc.msg}") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            what = type(node).__name__
            hint = " (function calls are not allowed)" if isinstance(node, ast.Call) else ""
            raise ExpressionError(
                f"condition {source!r} uses {what}{hint}; allowed: comparisons, and/or/not, names, "
                "node.field, [constant], literals"
            )
        identifier = (
            node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
        )
        if identifier.startswith("_"):
            raise ExpressionError(
                f"condition {source!r} refers to {identifier!r}: names starting with _ are not allowed"
            )
        if isinstance(node, ast.Name):
            names.add(node.id)
        if isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Constant):
            raise ExpressionError(f"condition {source!r}: subscripts must be constants, like items[0]")
    return Condition(source, tree, frozenset(names), tuple(_paths(tree)))


def _paths(tree: ast.AST) -> list[tuple[str, ...]]:
    """Every maximal ``name.attr.attr`` chain, for checking fields against output schemas."""
    chains: list[tuple[str, ...]] = []
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            parts: list[str] = []
            current: ast.AST = node
            while isinstance(current, ast.Attribute):
                inner.add(id(current.value))
                parts.append(current.attr)
                current = current.value
            if isinstance(current, ast.Name):
                chains.append((current.id, *reversed(parts)))
    return chains


def _evaluate(node: ast.AST, variables: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return variables.get(node.id)
    if isinstance(node, ast.Attribute):
        return _field(_evaluate(node.value, variables), node.attr)
    if isinstance(node, ast.Subscript):
        return _item(_evaluate(node.value, variables), node.slice.value)  # type: ignore[attr-defined]
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(_evaluate(e, variables) for e in node.elts)
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_evaluate(v, variables) for v in node.values)
        return any(_evaluate(v, variables) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, variables)
        return (not value) if isinstance(node.op, ast.Not) else -value
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, variables)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(right_node, variables)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    raise ExpressionError(f"unexpected {type(node).__name__} in a condition")  # parse_condition refused it


def _field(value: Any, name: str) -> Any:
    """``node.field``: a dict key; missing fields and not-yet-run nodes read as None."""
    return value.get(name) if isinstance(value, Mapping) else None


def _item(value: Any, key: Any) -> Any:
    try:
        return value[key]
    except (KeyError, IndexError, TypeError):
        return None
