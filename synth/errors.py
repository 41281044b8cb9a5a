"""Errors that users see. Each message says what went wrong, where, and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

#: The scope of ``--model SPEC`` / ``--sampling KEY=VALUE`` that covers every role (not a role name).
ALL_ROLES = "default"


class SynthError(Exception):
    """Base class: the CLI prints these without a traceback."""


class ModelSpecError(SynthError):
    """A model spec string (e.g. ``openai:gpt-4o-mini``) could not be parsed or resolved."""


class ModelLoadError(SynthError):
    """A model's files could not be found, converted or loaded."""


class InputError(SynthError):
    """A seed row is malformed; the message names file:line and field."""


class RunFolderError(SynthError):
    """A run folder is locked, or was made with a different configuration."""


class OptionError(SynthError, ValueError):
    """A graph option (``--option key=value``) is unknown or of the wrong type."""


class ExportError(SynthError):
    """An export format is unknown for a graph, or its data is unusable."""


def unknown_roles(names: Iterable[str], roles: Sequence[str]) -> dict[str, str]:
    """The names that are no role of the graph (:data:`ALL_ROLES` aside), each with how to say it:
    ``'judgee' (did you mean 'judge'?)``. What ``--model ROLE=SPEC`` and ``--sampling ROLE.KEY=VALUE``
    refuse, as a typo would leave that role on the run's defaults without a word."""
    unknown = {}
    for name in names:
        if name != ALL_ROLES and name not in roles:
            close = difflib.get_close_matches(name, roles, n=1)
            unknown[name] = f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
    return unknown
