"""Jinja2 for YAML specs: sandboxed rendering, and the static checks run when a spec loads.

Spec files may come from anyone, so their templates render in Jinja2's immutable sandbox (no access to
Python internals at render time), and names or attributes starting with ``_`` and the ``attr`` filter
are refused before anything runs.
"""

from __future__ import annotations

import functools
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from synth.role import Role, TemplateError

SANDBOX = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


@lru_cache(maxsize=1024)
def compiled(source: str) -> jinja2.Template:
    return SANDBOX.from_string(source)


def render(source: str, variables: dict[str, Any]) -> str:
    return compiled(source).render(**variables).strip()


def template_names(source: str) -> set[str]:
    """Variables the template reads from its context; raises ValueError for refused constructs.

    Cached by text: a spec's check asks once per node that runs a role, and 10k nodes may share a role."""
    return set(_template_names(source))


@functools.lru_cache(maxsize=1024)
def _template_names(source: str) -> frozenset[str]:
    try:
        tree = SANDBOX.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"template syntax error on its line {exc.lineno}: {exc.message}") from None
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name, nodes.Filter)):
        name = _refused(node)
        if name:
            raise ValueError(f"template uses {name!r}: names and attributes starting with _ are not allowed")
        if isinstance(node, nodes.Filter) and node.name == "attr":
            raise ValueError("template uses the attr filter, which is not allowed in graph specs")
    return frozenset(meta.find_undeclared_variables(tree))


def _refused(node: nodes.Node) -> str:
    if isinstance(node, nodes.Getattr):
        text = node.attr
    elif isinstance(node, nodes.Name):
        text = node.name
    elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        text = str(node.arg.value)
    else:
        return ""
    return text if text.startswith("_") else ""


class SpecRole(Role):
    """A role from a YAML spec: the same Role, rendered in the sandbox."""

    def _render(self, which: str, template: str, inputs: dict[str, Any]) -> str:
        try:
            return render(template, inputs)
        except jinja2.UndefinedError as exc:
            raise TemplateError(
                f"role '{self.name}' {which} template: {exc.message}; inputs given: {sorted(inputs)}. "
                "Guard values that may be missing with {% if name %}."
            ) from exc
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"role '{self.name}' {which} template: {exc}") from exc
