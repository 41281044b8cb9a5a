"""One ``synth run``: resolve the graph and models, open and lock the run folder, show progress, run.

Kept apart from the CLI so tests and notebooks run exactly what the command runs (``await
run_session(request)``), and apart from the runner, which knows nothing of folders, locks, caches, logs
or terminals.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.markup import escape
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

from synth.cli.console import FailureLines, route_library_logs
from synth.cli.progress import BatchProgress
from synth.engine.cache import CallCache
from synth.engine.inputs import (
    DEFAULT_MAX_FIELD_BYTES,
    check_input,
    count_rows,
    input_record,
    read_rows,
    recorded_inputs,
    same_input,
)
from synth.engine.logs import RunLog, error_kind
from synth.engine.run_folder import open_folder
from synth.engine.runner import Runner, RunSummary, run_fingerprint
from synth.engine.store import RunStore, open_locked
from synth.engine.trace import NodeTrace
from synth.errors import SynthError, unknown_roles
from synth.extras import require_extra
from synth.graph import ModelSet, SynthGraph
from synth.models.preflight import apply_mode, preflight
from synth.models.reply_guard import DEFAULT_MAX_REPLY_BYTES
from synth.models.spec import parse_spec
from synth.registry import available, load_graph
from synth.sampling import backend_defaults
from synth.sampling import check_roles as check_sampling_roles
from synth.sampling import validate as validate_sampling
from synth.trajectory import Trajectory

CACHE_FILE = "calls.sqlite"
LOG_FILE = "log.jsonl"


class RunRequest(BaseModel):
    """Everything ``synth run`` was asked (what lands in config.yaml, minus secrets: a model spec's URL
    credentials are written in their public form, see :func:`synth.models.spec.public_spec`)."""

    model_config = ConfigDict(extra="forbid")

    graph: str
    input: Path
    out: Path
    models: dict[str, str] = {"default": "local:gemma-3-270m"}
    options: dict[str, Any] = {}
    #: ``--sampling``: generation settings keyed ``default`` (every role) or a role (synth.sampling).
    sampling: dict[str, dict[str, Any]] = {}
    limit: int | None = Field(default=None, ge=1)
    concurrency: int = Field(default=16, ge=1)
    max_calls: int = Field(default=32, ge=1)
    timeout: float = Field(default=120.0, gt=0)
    retries: int = Field(default=5, ge=0)
    backoff: float = Field(default=0.5, ge=0)
    #: Largest input field in bytes (``--max-field-bytes``); a row with a larger one fails, naming it.
    max_field_bytes: int = Field(default=DEFAULT_MAX_FIELD_BYTES, ge=1)
    max_reply_bytes: int = Field(default=DEFAULT_MAX_REPLY_BYTES, ge=1)
    #: Seconds one model call may take in total, retries and backoff included (None: no cap).
    call_budget: float | None = Field(default=None, gt=0)
    api_key_env: str | None = None
    force: bool = False
    new: bool = False
    #: Add ``input`` to a run folder made from other input files (their rows and its rows, one run).
    add_input: bool = False
    retry_failed: bool = False
    checkpoints: bool = True
    cache: bool = True
    adaptive: bool = False
    #: Preflight each OpenAI-compatible endpoint before the folder is touched (`synth run` default: on).
    check: bool = False
    #: Print every finished node of every row (not stored in config.yaml: it changes no result).
    trace: bool = False
    #: Seconds between plain progress lines on stdout; 0 = none. ``synth run`` sets it when stdout is not a
    #: terminal (synth/cli/progress.py). Not stored in config.yaml either.
    progress_every: float = Field(default=0.0, ge=0)
    #: ``asyncio`` (this process) or ``ray`` (blocks of rows on a Ray cluster; docs/ray.md).
    executor: Literal["asyncio", "ray"] = "asyncio"
    ray_address: str | None = None
    ray_block_rows: int = Field(default=100, ge=1)
    ray_actors: int = Field(default=2, ge=1)
    #: Worker processes on this machine (``synth.engine.workers``);
    #: None: :func:`synth.engine.workers.auto_workers`.
    workers: int | None = Field(default=None, ge=1)


def resolve_graph(ref: str) -> SynthGraph:
    """A registered name (``coevol``), ``package.module:NAME`` / ``path/file.py:NAME``, or a YAML spec."""
    from synth.spec import is_spec_path, load_spec

    if is_spec_path(ref) and ref not in available():
        return load_spec(ref)
    if ref in available() or ":" not in ref:
        return load_graph(ref)
    target, _, attribute = ref.rpartition(":")
    if target.endswith(".py"):
        spec = importlib.util.spec_from_file_location(Path(target).stem, target)
        if spec is None or spec.loader is None or not Path(target).is_file():
            raise SynthError(f"graph file {target} does not exist")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    graph = getattr(module, attribute, None)
    if not isinstance(graph, SynthGraph):
        raise SynthError(f"{ref} is {type(graph).__name__}, not a synth.graph.SynthGraph")
    return graph


def check_roles(graph: SynthGraph, models: dict[str, str]) -> None:
    """Refuse ``--model ROLE=SPEC`` for a role the graph does not have (a typo would silently leave that
    role on the default model), listing the graph's roles with a did-you-mean."""
    roles = [role.name for role in graph.roles]
    unknown = unknown_roles(models, roles)
    if unknown:
        raise SynthError(
            f"--model {'=..., '.join(unknown)}=...: graph '{graph.name}' has no role "
            f"{', '.join(unknown.values())}; its roles: "
            f"{', '.join(roles) or 'none'}. Pass --model SPEC for all roles or --model ROLE=SPEC for one."
        )


#: Minimum per-call timeout for in-process (``local:``) backends, whose calls wait for batches.
LOCAL_TIMEOUT_S = 3600.0


def build_models(specs: dict[str, str], request: RunRequest, cache: CallCache | None = None) -> ModelSet:
    """One managed client per distinct spec, shared by the roles that use it, all on the run's cache.

    The set's ``specs`` are the public forms (URL credentials as ``***``): they reach the fingerprint,
    config.yaml, provenance and logs; the real strings only reach the clients."""
    from synth.models import ClientOptions, make_client
    from synth.models.spec import public_spec

    options = ClientOptions(
        max_concurrency=request.max_calls,
        timeout_s=request.timeout,
        max_retries=request.retries,
        backoff_base_s=request.backoff,
        max_reply_bytes=request.max_reply_bytes,
        adaptive=request.adaptive,
        api_key_env=request.api_key_env,
    )
    clients: dict[str, Any] = {}
    for spec in dict.fromkeys(specs.values()):
        # An in-process model queues requests behind whole batches on a shared CPU: a timeout there only
        # re-enqueues work that is still running, so local backends get at least LOCAL_TIMEOUT_S.
        spec_options = options.model_copy(update={"sampling": {**backend_defaults(spec), **options.sampling}})
        if spec.startswith("local:") and options.timeout_s is not None:  # None: no timeout at all
            spec_options = spec_options.model_copy(
                update={"timeout_s": max(options.timeout_s, LOCAL_TIMEOUT_S)}
            )
        clients[spec] = make_client(spec, spec_options)
        clients[spec].cache = cache
    by_role = {role: clients[spec] for role, spec in specs.items() if role != "default"}
    public = {role: public_spec(spec) for role, spec in specs.items()}
    return ModelSet(
        default=clients[specs["default"]],
        by_role=by_role,
        specs=public,
        sampling=validate_sampling(request.sampling),
        call_budget=request.call_budget,
    )


async def run_session(request: RunRequest, console: Console | None = None) -> tuple[RunSummary, Path]:
    """Run ``request`` to completion; returns the summary and the folder written (``--new`` may pick one)."""
    console = console or Console(stderr=True, quiet=True)
    if request.executor == "ray" and request.retry_failed:
        raise SynthError(
            "--retry-failed runs on the asyncio executor: drop --executor ray (both executors share the run "
            "folder's records, so the retried rows land in the same store)"
        )
    if request.executor == "ray":
        require_extra("--executor ray", "ray", "ray")
    graph = resolve_graph(request.graph)
    check_input(request.input, folder_ok=request.executor == "ray")  # a missing input leaves no folder
    check_roles(graph, request.models)
    options = graph.resolve_options(request.options)
    check_sampling_roles(request.sampling, graph.name, (role.name for role in graph.roles))
    checked = await _preflight(request, console)  # an unreachable endpoint fails here, in seconds
    models = build_models(request.models, request)  # before touching the folder: a bad spec or key fails here
    for spec, report in checked.items():
        for client in models.clients():
            if getattr(client, "spec", None) == str(parse_spec(spec)):
                apply_mode(client, report.structured)
    try:
        fingerprint = run_fingerprint(graph, options, models.specs, models.sampling)
        source = input_record(request.input)
        folder, inputs, reset = open_folder(request, graph, fingerprint, source)
        changed = [
            i for i in recorded_inputs(folder) if same_input(i, source) and i["sha256"] != source["sha256"]
        ]
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            store = open_locked(folder, stack)
            log = stack.enter_context(RunLog(folder / LOG_FILE, api_key_env=request.api_key_env))
            stack.enter_context(route_library_logs(log))  # library tracebacks: log.jsonl, not the terminal
            try:
                if reset or store.read_fingerprint() not in (None, fingerprint):
                    _reset(store)
                if changed and changed[0].get("sha256") and not reset:
                    console.print(
                        f"note: {request.input} changed since this folder's last run: new and edited lines "
                        "run (an edited line's record replaces its old one), unchanged lines are skipped",
                        markup=False,
                    )
                    log.event("input_changed", path=str(request.input), was=changed[0], now=source)
                config = {
                    "graph": graph.name,
                    "graph_version": graph.version,
                    **request.model_dump(mode="json", exclude={"trace", "progress_every"}),
                    "models": models.specs,  # credentials in a URL redacted (the request holds them)
                    "inputs": inputs,
                    # `graph` is what was asked (a name, a YAML path, file.py:NAME); cards and tags use this
                    "graph_name": graph.name,
                    "options": options,
                    "fingerprint": fingerprint,
                }
                store.write_config(config, fingerprint)
                workers = resolve_workers(request, models.specs)
                # Ray: one cache per block; --workers: one connection per worker, opened in the worker
                if request.cache and request.executor == "asyncio" and workers == 1:
                    cache = CallCache(folder / CACHE_FILE)
                    stack.callback(cache.close)  # runs first: flushes the cache before the lock goes
                    for client in models.clients():
                        client.cache = cache
                log.event("run_start", config=config, already=store.counts())
                summary = await _run(request, graph, models, store, log, console, workers)
            except BaseException as exc:
                log.event("run_aborted", error=f"{type(exc).__name__}: {exc}"[:1000])
                raise
    finally:
        for client in models.clients():
            client.cache = None
            await client.close()
    return summary, folder


async def _preflight(request: RunRequest, console: Console) -> dict[str, Any]:
    if not request.check:
        return {}
    return await preflight(
        request.models,
        api_key_env=request.api_key_env,
        timeout=min(request.timeout, 60.0),
        say=lambda line: console.print(escape(line), soft_wrap=True),
    )


def _reset(store: RunStore) -> None:
    """``--force`` on a changed configuration: forget records and checkpoints (WAL files included, or
    SQLite would replay the old checkpoints into the new file). The call cache stays: its keys are the
    requests themselves, so whatever still matches is still right."""
    store.reset()
    for suffix in ("-wal", "-shm"):
        store.checkpoint_path.with_name(store.checkpoint_path.name + suffix).unlink(missing_ok=True)
    from synth.executors.shards import SHARDS_DIR

    shutil.rmtree(store.folder / SHARDS_DIR, ignore_errors=True)  # Ray shards, manifest and block folders


def resolve_workers(request: RunRequest, specs: dict[str, str]) -> int:
    """``request.workers``, checked against the options it cannot go with, or the automatic rule."""
    from synth.engine.workers import auto_workers

    if request.workers is None:
        if request.executor != "asyncio" or request.trace:
            return 1
        rows = count_rows(request.input) if request.input.is_file() else None
        if request.limit is not None:
            rows = request.limit if rows is None else min(rows, request.limit)
        return auto_workers(specs, request.max_calls, rows)
    if request.workers > 1:
        if request.executor != "asyncio":
            raise SynthError("--workers runs on the asyncio executor; with --executor ray use --ray-actors")
        if request.trace:
            raise SynthError("--trace prints every node from one process: use it with --workers 1")
        if request.workers > request.max_calls:
            raise SynthError(
                f"--workers {request.workers} with --max-calls {request.max_calls}: each worker needs at "
                "least one call slot (the limit is split between them); lower --workers or raise --max-calls"
            )
    return request.workers


async def _run(
    request: RunRequest,
    graph: SynthGraph,
    models: ModelSet,
    store: RunStore,
    log: RunLog,
    console: Console,
    workers: int = 1,
) -> RunSummary:
    runner = Runner(
        graph,
        models,
        store,
        options=request.options,
        concurrency=request.concurrency,
        checkpoints=request.checkpoints,
        on_event=NodeTrace(console).on_event if request.trace else None,
    )
    total = count_rows(request.input) if request.input.is_file() else None
    if request.limit is not None and total is not None:
        total = min(total, request.limit)
    calls = None
    if workers > 1:
        from synth.engine.worker_calls import WorkerCalls

        calls = WorkerCalls()  # the workers make the calls: the progress line reads their counters
    with _progress(console) as progress, _batch_lines(request, graph.name, calls or models) as lines:
        bar = _RunProgress(progress, total, graph.name, log)
        lines.watch(bar)
        if request.executor == "ray":
            from synth.executors.ray_executor import run_on_ray

            summary = await run_on_ray(
                request, store, runner.fingerprint, on_record=bar.on_record, on_skip=bar.on_skip
            )
        elif workers > 1:
            from synth.engine.workers import folder_work, run_workers

            started = time.perf_counter()
            summary = await run_workers(
                workers,
                folder_work(request, graph, store.folder, workers),
                on_record=bar.on_record,
                on_skip=bar.on_skip,
                on_start=lambda index, pid: log.event("worker_start", index=index, pid=pid, workers=workers),
                calls=calls,
            )
            summary.elapsed_s = time.perf_counter() - started
        else:
            summary = await runner.run(
                read_rows(request.input, graph.seed_model, max_field_bytes=request.max_field_bytes),
                limit=request.limit,
                retry_failed=request.retry_failed,
                on_record=bar.on_record,
                on_skip=bar.on_skip,
            )
            summary.clients = client_report(models)
        bar.finish()
    log.event(
        "run_end",
        counts=dict(summary.counts),
        skipped=summary.skipped,
        usage=summary.usage.model_dump(),
        elapsed_s=round(summary.elapsed_s, 3),
        rows_per_s=round(summary.written / summary.elapsed_s, 3) if summary.elapsed_s else None,
        clients=summary.clients,
        totals=store.counts(),
    )
    return summary


def _batch_lines(request: RunRequest, name: str, models: Any) -> contextlib.AbstractContextManager[Any]:
    """Plain progress lines every ``request.progress_every`` seconds (batch jobs; 0: none); ``models``: what
    has the clients making the calls (the run's ModelSet, or the workers' counters)."""
    clients = models.clients if request.executor == "asyncio" else None  # Ray: calls run in the actors
    return BatchProgress(name, clients).every(request.progress_every)


def client_report(models: ModelSet) -> dict[str, dict[str, Any]]:
    """Per model spec: calls, retries, errors by type, backoff, cache hits (the log's retries summary)."""
    report: dict[str, dict[str, Any]] = {}
    for client in models.clients():
        stats = client.stats()
        report[getattr(client, "spec", "") or type(client).__name__] = {
            "calls": stats.calls,
            "ok": stats.ok,
            "failed": stats.failed,
            "attempts": stats.attempts,
            "retries": stats.retries,
            "backoff_s": round(stats.backoff_s, 3),
            "errors": dict(stats.errors),
            "cache_hits": stats.cache_hits,
            "max_in_flight": stats.max_in_flight,
            "concurrency_limit": client.concurrency_limit(),
            "mean_latency_s": round(stats.mean_latency_s, 4),
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
        }
    return report


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ok {task.fields[ok]} failed {task.fields[failed]} filtered {task.fields[filtered]}"),
        _RateColumn(),
        _TokenRateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


class _RateColumn(ProgressColumn):
    """Rows finished by this run over its elapsed time.

    Not Rich's windowed ``task.speed``: rows that finish together (one model batch) give it a near-zero
    interval, and a 2-row run then read "38701.2 rows/s".
    """

    def render(self, task: Any) -> Text:
        done, elapsed = task.completed, task.elapsed
        return Text(f"{done / elapsed:.2f} rows/s" if done and elapsed else "- rows/s")


class _TokenRateColumn(ProgressColumn):
    def render(self, task: Any) -> Text:
        tokens, elapsed = task.fields.get("tokens", 0), task.elapsed
        rate = f"{tokens / elapsed:.0f} tok/s" if elapsed else "- tok/s"
        return Text(f"{tokens} tok, {rate}")


class _RunProgress:
    """Feeds the progress bar and the log from the runner's callbacks (both run on the event loop)."""

    def __init__(self, progress: Progress, total: int | None, description: str, log: RunLog) -> None:
        self.progress, self.log, self.total = progress, log, total
        self.counts: dict[str, Any] = {"ok": 0, "failed": 0, "filtered": 0, "tokens": 0}
        self.task = progress.add_task(description, total=total, **self.counts)
        self._last = 0.0
        self.failures = FailureLines(progress.console)

    def on_record(self, trajectory: Trajectory) -> None:
        self.counts[trajectory.status] += 1
        self.counts["tokens"] += trajectory.usage.total_tokens
        if trajectory.status == "failed":
            kind = error_kind(trajectory.error, trajectory.source)
            self.log.event(
                "row_failed",
                id=trajectory.id,
                source=trajectory.source,
                kind=kind,
                error=(trajectory.error or "")[:1000],
            )
            self.failures.add(kind, trajectory.source or trajectory.id, trajectory.error or "")
        self.progress.advance(self.task)
        # Rich redraws ~10 times a second; refreshing its fields on every row would cost CPU at 300 rows/s.
        now = time.monotonic()
        if now - self._last >= 0.1:
            self._last = now
            self.progress.update(self.task, **self.counts)

    def on_skip(self) -> None:
        """A row already done is no work left: shrink the total rather than advance (keeps ETA honest)."""
        if self.total:
            self.total -= 1
            self.progress.update(self.task, total=self.total)

    def finish(self) -> None:
        self.progress.update(self.task, **self.counts)
