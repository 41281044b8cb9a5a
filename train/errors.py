"""Errors of the train package. They subclass :class:`synth.errors.SynthError`, so the CLI prints them
without a traceback; each message says what went wrong, where, and how to fix it."""

from __future__ import annotations

from synth.errors import SynthError


class TrainError(SynthError):
    """A training or evaluation run cannot start or continue (bad model, data, folder or hardware)."""
