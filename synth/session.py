"""One ``synth run``: resolve the graph and models, open and lock the run folder, show progress, run.

Kept apart from the CLI so tests and notebooks run exactly what the command runs (``await
run_session(request)``), and apart from the runner, which knows nothing of folders, locks or terminals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from synth.errors import RunFolderError
from synth.graph import ModelSet, SynthGraph
from synth.inputs import count_rows, read_rows
from synth.registry import load_graph
from synth.runner import Runner, RunSummary, run_fingerprint
from synth.store import RunLock, RunStore
from synth.trajectory import Trajectory


class RunRequest(BaseModel):
    """Everything ``synth run`` was asked (what lands in config.yaml, minus secrets: none are here)."""

    model_config = ConfigDict(extra="forbid")

    graph: str
    input: Path
    out: Path
    models: dict[str, str] = {"default": "local:gemma-3-270m"}
    options: dict[str, Any] = {}
    limit: int | None = None
    concurrency: int = 16
    max_calls: int = 32
    timeout: float = 120.0
    retries: int = 5
    api_key_env: str | None = None
    force: bool = False
    new: bool = False
    retry_failed: bool = False
    checkpoints: bool = True


def build_models(specs: dict[str, str], request: RunRequest) -> ModelSet:
    """One managed client per distinct spec, shared by the roles that use it."""
    from synth.models import ClientOptions, make_client

    options = ClientOptions(
        max_concurrency=request.max_calls,
        timeout_s=request.timeout,
        max_retries=request.retries,
        api_key_env=request.api_key_env,
    )
    clients: dict[str, Any] = {}
    for spec in dict.fromkeys(specs.values()):
        clients[spec] = make_client(spec, options)
    by_role = {role: clients[spec] for role, spec in specs.items() if role != "default"}
    return ModelSet(default=clients[specs["default"]], by_role=by_role, specs=dict(specs))


def open_folder(request: RunRequest, graph: SynthGraph, fingerprint: str) -> Path:
    """The folder to write: refuses a changed configuration unless ``--force`` (reset) or ``--new``."""
    folder = request.out
    if request.new:
        candidate, n = folder, 1
        while _fingerprint_of(candidate) not in (None, fingerprint):
            n += 1
            candidate = folder.with_name(f"{folder.name}-{n}")
        return candidate
    existing = _fingerprint_of(folder)
    if existing not in (None, fingerprint) and not request.force:
        raise RunFolderError(
            f"{folder} holds a run with another configuration (graph, options, models or templates changed). "
            "Use --new to write to a new folder, --force to discard its records, or another --out."
        )
    return folder


def _fingerprint_of(folder: Path) -> str | None:
    path = folder / "fingerprint"
    return path.read_text().strip() if path.exists() else None


async def run_session(request: RunRequest, console: Console | None = None) -> tuple[RunSummary, Path]:
    console = console or Console(stderr=True, quiet=True)
    graph = load_graph(request.graph)
    models = build_models(request.models, request)
    try:
        options = graph.resolve_options(request.options)
        fingerprint = run_fingerprint(graph, options, models.specs)
        folder = open_folder(request, graph, fingerprint)
        folder.mkdir(parents=True, exist_ok=True)
        lock = RunLock(folder)
        lock.acquire()
        store = RunStore(folder)
        try:
            if store.read_fingerprint() not in (None, fingerprint):
                store.reset()
            config = {
                "graph": graph.name,
                "graph_version": graph.version,
                **request.model_dump(mode="json"),
                "options": options,
                "fingerprint": fingerprint,
            }
            store.write_config(config, fingerprint)
            runner = Runner(
                graph,
                models,
                store,
                options=request.options,
                concurrency=request.concurrency,
                checkpoints=request.checkpoints,
            )
            rows = read_rows(request.input, graph.seed_model)
            total = count_rows(request.input)
            if request.limit is not None and total is not None:
                total = min(total, request.limit)
            with _progress(console) as progress:
                task = progress.add_task(graph.name, total=total, ok=0, failed=0, tokens=0)
                summary = await runner.run(
                    rows,
                    limit=request.limit,
                    retry_failed=request.retry_failed,
                    on_record=_advance(progress, task),
                )
        finally:
            store.close()
            lock.release()
    finally:
        for client in models.clients():
            await client.close()
    return summary, folder


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ok {task.fields[ok]} failed {task.fields[failed]}"),
        _RateColumn(),
        TextColumn("{task.fields[tokens]} tok"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


class _RateColumn(ProgressColumn):
    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} rows/s" if speed else "- rows/s")


def _advance(progress: Progress, task: Any) -> Any:
    counts = {"ok": 0, "failed": 0, "filtered": 0, "tokens": 0}

    def on_record(trajectory: Trajectory) -> None:
        counts[trajectory.status] += 1
        counts["tokens"] += trajectory.usage.total_tokens
        progress.update(task, advance=1, ok=counts["ok"], failed=counts["failed"], tokens=counts["tokens"])

    return on_record
