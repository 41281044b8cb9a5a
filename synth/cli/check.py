"""``synth check MODEL_SPEC``: reachability, model list, structured-output mode, logprobs, latency."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console()


def check_command(
    spec: Annotated[str, typer.Argument(help="Model spec, e.g. openai:MODEL@http://127.0.0.1:8000/v1.")],
    api_key_env: Annotated[
        str | None, typer.Option(help="Env var holding the API key (default OPENAI_API_KEY).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for one probe call.")] = 60.0,
) -> None:
    """Check a model endpoint before a run: reachable, model served, structured mode, latency, --max-calls."""
    from synth.models.preflight import check_spec

    report = asyncio.run(check_spec(spec, api_key_env=api_key_env, timeout=timeout))
    for line in report.lines():
        console.print(escape(line), soft_wrap=True)
