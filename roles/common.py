"""Shared pieces of the built-in roles: template loading from ``roles/templates``."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def template(name: str) -> str:
    """Text of ``roles/templates/NAME`` (shipped as package data, so installed wheels have it too)."""
    return resources.files("roles").joinpath("templates", name).read_text(encoding="utf-8")
