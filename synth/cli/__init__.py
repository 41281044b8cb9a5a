"""The `synth` command line (typer): one module per command group; `app` is the root."""

from synth.cli.root import app, main

__all__ = ["app", "main"]
