"""What ``synth run`` shows on the terminal, and the exit status it ends with.

A faulty run used to print every traceback the libraries under the engine log (AutoGen logs each failed
team turn with its stack: 132 tracebacks for 300 rows, 831 lines on Ctrl-C). The rule now:

* the terminal gets **one line per failure kind** (the first row that failed that way, with its reason)
  while the run goes, and **a summary** at the end: rows failed per kind and what to type next;
* library warnings and tracebacks go to the run's ``log.jsonl`` (event ``library_log``) — or also to the
  terminal with ``--verbose``;
* Ctrl-C stops cleanly: the rows finished so far stay stored, and the exact command to resume is printed;
* the exit status says how it went (:func:`exit_status`, documented in README "Reliability").
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import sys
import traceback
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from synth.engine.logs import RunLog, read_events

#: Loggers of the libraries under the engine: their records never reach the terminal during a run.
LIBRARY_LOGGERS = (
    "autogen_core", "autogen_agentchat", "autogen_ext", "asyncio", "langgraph", "openai", "httpx", "httpx2",
)  # fmt: skip

EXIT_OK = 0
#: A bad command line or configuration (typer's usage errors, ``synth.errors.SynthError``).
EXIT_USAGE = 2
#: Some rows failed and ``--fail-on-error`` was given.
EXIT_PARTIAL = 3
#: Rows ran and none succeeded (a server that is down, a wrong model name, a broken graph).
EXIT_NO_ROW_OK = 4
#: Stopped by Ctrl-C (128 + SIGINT, the shell convention).
EXIT_INTERRUPTED = 130


def exit_status(counts: Mapping[str, int], *, fail_on_error: bool = False) -> int:
    """The exit status for the rows one run wrote (``counts``: ok / failed / filtered)."""
    failed = counts.get("failed", 0)
    succeeded = sum(n for status, n in counts.items() if status != "failed")
    if failed and not succeeded:
        return EXIT_NO_ROW_OK
    if failed and fail_on_error:
        return EXIT_PARTIAL
    return EXIT_OK


class _ToRunLog(logging.Handler):
    """Writes library records (warnings and up) to ``log.jsonl``, traceback included, redacted."""

    def __init__(self, log: RunLog) -> None:
        super().__init__(logging.WARNING)
        self.run_log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            trace = "".join(traceback.format_exception(*record.exc_info)) if record.exc_info else None
            self.run_log.event(
                "library_log",
                logger=record.name,
                level=record.levelname,
                message=record.getMessage()[:2000],
                traceback=trace[-6000:] if trace else None,
            )
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def _detached(handler: logging.Handler) -> Iterator[None]:
    """``handler`` on every library logger, which stop propagating to the root logger meanwhile."""
    saved = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate))
        logger.addHandler(handler)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate


def route_library_logs(log: RunLog) -> contextlib.AbstractContextManager[None]:
    """While a run folder is open: library warnings and tracebacks go to its ``log.jsonl`` only."""
    return _detached(_ToRunLog(log))


def terminal_library_logs(verbose: bool) -> contextlib.AbstractContextManager[None]:
    """For a whole command: library records print to stderr with ``--verbose``, else nowhere (inside a run
    they also reach ``log.jsonl``; outside one — the teardown after Ctrl-C — they are noise)."""
    handler: logging.Handler = logging.StreamHandler(sys.stderr) if verbose else logging.NullHandler()
    handler.setLevel(logging.WARNING)
    return _detached(handler)


class FailureLines:
    """Prints the first failure of each kind as one line while a run goes; later ones are only counted."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.kinds: Counter[str] = Counter()

    def add(self, kind: str, where: str, error: str) -> None:
        self.kinds[kind] += 1
        if self.kinds[kind] == 1:
            first = (error.splitlines() or [""])[0][:300]
            self.console.print(
                f"[red]failed[/] {escape(kind)} — first at {escape(where)}: {escape(first)}"
                " [dim](more of this kind are counted in the summary)[/]",
                soft_wrap=True,
            )


def failures_since_last_start(log_path: Path) -> Counter[str]:
    """Failed rows per kind that the last run of a folder logged (``row_failed`` after its ``run_start``)."""
    kinds: Counter[str] = Counter()
    for event in read_events(log_path):
        if event.get("event") == "run_start":
            kinds.clear()
        elif event.get("event") == "row_failed":
            kinds[str(event.get("kind", "unknown"))] += 1
    return kinds


def rerun_command(*extra: str) -> str:
    """The command line this process was started with (as ``synth ...``), plus ``extra`` flags."""
    args = [a for a in sys.argv[1:] if a not in extra]
    return shlex.join(["synth", *args, *extra])


def print_failure_summary(console: Console, folder: Path, kinds: Counter[str]) -> None:
    """The end-of-run summary of failed rows: one line per kind, then where to look and how to retry."""
    if not kinds:
        return
    total = sum(kinds.values())
    console.print(f"[red]{total} row(s) failed[/] (stored as failed records; nothing was lost):")
    for kind, count in kinds.most_common():
        console.print(f"  {count:>6} x {escape(kind)}", soft_wrap=True)
    console.print(
        f"  details: synth status {escape(str(folder))} (tracebacks in {escape(str(folder / 'log.jsonl'))})\n"
        f"  retry them: {escape(rerun_command('--retry-failed'))}",
        soft_wrap=True,
    )


def print_interrupted(console: Console, out: Any) -> None:
    """Ctrl-C: what is kept and the exact command that resumes."""
    console.print(
        f"\n[yellow]interrupted[/]: the rows finished so far are stored in {escape(str(out))}. "
        f"Re-run the same command to resume:\n  {escape(rerun_command())}",
        soft_wrap=True,
    )
