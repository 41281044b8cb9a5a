"""Errors that users see. Each message says what went wrong, where, and how to fix it."""

from __future__ import annotations


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
