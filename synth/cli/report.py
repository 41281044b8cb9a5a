"""``synth report runs/NAME``: write a run's HTML report with charts (see docs/report.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

_console = Console(stderr=True)


def report_command(
    run_dir: Annotated[Path, typer.Argument(help="Run folder (the one holding config.yaml).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Report folder (default RUN_DIR/report; replaced).")
    ] = None,
) -> None:
    """Write RUN_DIR/report/index.html and PNG charts: statuses, filters, scores, per-role tokens and
    latency, errors, and the graph's own section (CoEvol rounds, SMART retrieval, ATM exact match)."""
    from synth.report import write_report

    result = write_report(run_dir, out)
    _console.print(result.describe(), markup=False, highlight=False)
    print(result.index)
