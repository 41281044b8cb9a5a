"""``synth status``: what a run folder holds — counts, errors by kind, tokens, cost, the last run's numbers.

Reads ``records.sqlite`` through its own read-only connection with SQL aggregates (``json_extract``), so
it is fast on 100k records, never creates files in a folder that is not a run, and works while a run is
writing (WAL readers never block the writer).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from synth.engine.logs import error_kind, read_events, redact_urls
from synth.errors import RunFolderError

LOG_FILE = "log.jsonl"


@dataclass
class RunStatus:
    """A snapshot of one run folder. Token counts are those of the stored records' calls."""

    folder: Path
    graph: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    first_errors: list[tuple[str, str]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    cached_calls: int = 0
    last_run: dict[str, Any] | None = None

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    def cost(self, price_in: float | None, price_out: float | None) -> float | None:
        """Cost in the prices' currency, given prices per 1M prompt / completion tokens (None: unknown)."""
        if price_in is None and price_out is None:
            return None
        return (self.prompt_tokens * (price_in or 0.0) + self.completion_tokens * (price_out or 0.0)) / 1e6


def read_status(folder: Path | str, *, first: int = 5) -> RunStatus:
    folder = Path(folder)
    config_path = folder / "config.yaml"
    if not config_path.exists():
        raise RunFolderError(f"{folder} is not a run folder (no config.yaml); run `synth run` first.")
    config = yaml.safe_load(config_path.read_text()) or {}
    status = RunStatus(folder=folder, graph=str(config.get("graph", "")))
    db_path = folder / "records.sqlite"
    if db_path.exists():
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            _read_records(db, status, first)
        finally:
            db.close()
    ends = list(read_events(folder / LOG_FILE, "run_end"))
    status.last_run = ends[-1] if ends else None
    return status


def _read_records(db: sqlite3.Connection, status: RunStatus, first: int) -> None:
    status.counts = dict(db.execute("SELECT status, COUNT(*) FROM records GROUP BY status").fetchall())
    usage = db.execute(
        "SELECT COALESCE(SUM(json_extract(record, '$.usage.prompt_tokens')), 0),"
        " COALESCE(SUM(json_extract(record, '$.usage.completion_tokens')), 0),"
        " COALESCE(SUM(json_extract(record, '$.usage.calls')), 0),"
        " COALESCE(SUM(json_extract(record, '$.usage.cached_calls')), 0) FROM records"
    ).fetchone()
    status.prompt_tokens, status.completion_tokens, status.calls, status.cached_calls = map(int, usage)
    for source, error in db.execute(
        "SELECT source, error FROM records WHERE status = 'failed' ORDER BY updated_at"
    ):
        status.errors[error_kind(error, source)] += 1
        if len(status.first_errors) < first:
            status.first_errors.append((source, redact_urls(error or "")))


def render_status(
    status: RunStatus, console: Console, *, price_in: float | None = None, price_out: float | None = None
) -> None:
    console.print(f"[bold]{escape(str(status.folder))}[/] (graph {escape(status.graph)})")
    table = Table()
    table.add_column("status")
    table.add_column("rows", justify="right")
    for key, value in sorted(status.counts.items()):
        table.add_row(key, str(value))
    table.add_row("[bold]total", f"[bold]{status.rows}")
    console.print(table)
    line = (
        f"tokens: {status.prompt_tokens} prompt + {status.completion_tokens} completion "
        f"in {status.calls} calls ({status.cached_calls} from the call cache)"
    )
    cost = status.cost(price_in, price_out)
    if cost is not None:
        line += f"; cost {cost:.4f} (at {price_in or 0:g} in / {price_out or 0:g} out per 1M tokens)"
    console.print(line, markup=False)
    if status.errors:
        errors = Table()
        errors.add_column("failed rows by kind")
        errors.add_column("rows", justify="right")
        for kind, count in status.errors.most_common():
            errors.add_row(escape(kind), str(count))
        console.print(errors)
        for source, error in status.first_errors:
            console.print(f"[red]failed[/] {escape(source)}: {escape(error[:300])}", highlight=False)
    if status.last_run:
        _render_last_run(status.last_run, console)


def _render_last_run(run: dict[str, Any], console: Console) -> None:
    rate = run.get("rows_per_s")
    console.print(
        f"last run ({run.get('ts', '?')}): wrote {run.get('counts')}, skipped {run.get('skipped', 0)} in "
        f"{run.get('elapsed_s', 0):.1f}s" + (f" ({rate:.2f} rows/s)" if rate else ""),
        markup=False,
    )
    for spec, client in (run.get("clients") or {}).items():
        errors = ", ".join(f"{k} {v}" for k, v in (client.get("errors") or {}).items()) or "none"
        console.print(
            f"  {redact_urls(spec)}: {client.get('calls', 0)} calls, {client.get('retries', 0)} retries "
            f"({client.get('backoff_s', 0):.1f}s backoff), {client.get('cache_hits', 0)} cache hits, "
            f"failed attempts: {errors}",
            markup=False,
        )
