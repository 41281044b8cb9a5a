"""``synth run --trace``: one live line per finished graph node, printed above the progress bar.

The runner streams each row's node updates (LangGraph ``astream``, ``stream_mode="updates"``) to
:meth:`NodeTrace.on_event`; a line shows the row, the node, each role call in the update (ok or the
failure reason, the output cut short, tokens, seconds) and the other state keys the node wrote.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape

WIDTH = 160


class NodeTrace:
    """Prints node events to a rich console (the progress bar's, so lines scroll above the bar)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.events = 0

    def on_event(self, trajectory_id: str, node: str, update: dict[str, Any]) -> None:
        self.events += 1
        self.console.print(f"[dim]{trajectory_id[:8]}[/] [bold cyan]{escape(node)}[/] {describe(update)}")


def describe(update: dict[str, Any]) -> str:
    """A short, markup-safe summary of one node's state update."""
    parts = [_step(step) for step in update.get("steps") or []]
    others = sorted(k for k in update if k not in ("steps", "seed"))
    if others:
        parts.append(f"[dim]wrote {', '.join(others)}[/]")
    return " | ".join(parts) or "[dim](no update)[/]"


def _step(step: dict[str, Any]) -> str:
    usage = step.get("usage") or {}
    tokens = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
    cost = f"[dim]{tokens} tok {step.get('latency_s', 0.0):.1f}s[/]"
    if not step.get("ok", True):
        return f"[red]{escape(step['role'])} failed ({escape(str(step.get('error_reason')))})[/] {cost}"
    output = step.get("output")
    text = json.dumps(output, ensure_ascii=False) if output is not None else step.get("raw", "")
    short = text if len(text) <= WIDTH else text[: WIDTH - 3] + "..."
    return f"[green]{escape(step['role'])}[/] {escape(short)} {cost}"
