"""The ``synth`` command line (Typer). The only place with sync wrappers around the async engine."""

from __future__ import annotations

import asyncio
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape

from synth.cli.check import check_command
from synth.cli.data import export_command, filter_command
from synth.cli.eval import eval_app
from synth.cli.graphs import graphs_app, roles_app
from synth.cli.index import index_app
from synth.cli.progress import DEFAULT_EVERY_S
from synth.cli.push import push_command
from synth.cli.report import report_command
from synth.cli.train import train_app
from synth.engine.inputs import DEFAULT_MAX_FIELD_BYTES
from synth.errors import SynthError
from synth.extras import check_project_packages, missing_extra

app = typer.Typer(
    help="Synthesize training data with multi-agent role graphs, and train on it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Model backends and their files.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(graphs_app, name="graphs")
app.add_typer(roles_app, name="roles")
app.add_typer(index_app, name="index")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.command("push")(push_command)
app.command("report")(report_command)
app.command("check")(check_command)
console = Console(stderr=True)


class Executor(StrEnum):
    """Where ``synth run`` runs the rows."""

    asyncio = "asyncio"
    ray = "ray"


def _parse_sampling(pairs: list[str]) -> dict[str, dict[str, Any]]:
    from synth.sampling import SamplingError, parse

    try:
        return parse(pairs)
    except SamplingError as exc:
        raise typer.BadParameter(str(exc), param_hint="--sampling") from None


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are YAML scalars (``3`` is an int, ``true`` a bool)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"option {pair!r} must look like key=value", param_hint="--option")
        options[key.strip()] = yaml.safe_load(value)
    return options


def _parse_models(values: list[str]) -> dict[str, str]:
    """``SPEC`` sets the default model; ``ROLE=SPEC`` overrides one role."""
    specs: dict[str, str] = {}
    for value in values:
        head, sep, tail = value.partition("=")
        if sep and ":" not in head:
            specs[head] = tail
        else:
            specs["default"] = value
    specs.setdefault("default", "local:gemma-3-270m")
    return specs


@app.command()
def run(
    graph: Annotated[str, typer.Argument(help="Graph name (see `synth graphs list`).")],
    input: Annotated[Path, typer.Option("--input", "-i", help="Seed rows (.jsonl or .parquet).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (created; re-running resumes).")],
    model: Annotated[list[str], typer.Option("--model", "-m", help="SPEC or ROLE=SPEC; repeatable.")] = [],  # noqa: B006
    option: Annotated[list[str], typer.Option("--option", "-O", help="Graph option key=value.")] = [],  # noqa: B006
    sampling: Annotated[
        list[str],
        typer.Option(
            "--sampling",
            "-S",
            help="Generation setting KEY=VALUE (every role) or ROLE.KEY=VALUE; keys max_tokens, temperature, "
            "top_p, seed, stop; repeatable. Wins over the roles' and the graph's own settings.",
        ),
    ] = [],  # noqa: B006
    corpus: Annotated[
        Path | None, typer.Option(help="Passages for retrieval graphs (sets the graph option corpus).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Process at most N input rows.")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, help="Rows in flight.")] = 16,
    max_calls: Annotated[
        int | None, typer.Option(min=1, help="Model calls in flight per model (default 2 x concurrency).")
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds per model call before it is retried.")
    ] = 120.0,
    retries: Annotated[int, typer.Option(min=0, help="Retries per model call on 429/5xx/timeouts.")] = 5,
    call_budget: Annotated[
        float | None,
        typer.Option(help="Seconds one model call may take in total, retries and backoff included (no cap)."),
    ] = None,
    backoff: Annotated[
        float, typer.Option(min=0.0, help="First retry backoff in seconds (doubles per retry, jittered).")
    ] = 0.5,
    max_field_bytes: Annotated[
        int,
        typer.Option(min=1, help="Largest input field in bytes; a row with a larger one fails, naming it."),
    ] = DEFAULT_MAX_FIELD_BYTES,
    max_reply_bytes: Annotated[
        int | None,
        typer.Option(help="Largest model reply in bytes (default 8000000); a larger one fails its call."),
    ] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="Env var holding the API key (default OPENAI_API_KEY).")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Discard the folder's records if its configuration changed.")
    ] = False,
    new: Annotated[
        bool, typer.Option(help="If the folder exists with another configuration, use NAME-2, -3...")
    ] = False,
    add_input: Annotated[
        bool, typer.Option(help="Add --input to a run folder made from other input files (one run of all).")
    ] = False,
    retry_failed: Annotated[bool, typer.Option(help="Re-run only the rows stored as failed.")] = False,
    cache: Annotated[
        bool, typer.Option(help="Reuse finished model calls from the run folder (a re-run never pays twice).")
    ] = True,
    checkpoints: Annotated[
        bool, typer.Option(help="Checkpoint each row after every node (a killed row resumes mid-graph).")
    ] = True,
    adaptive: Annotated[
        bool, typer.Option(help="Adapt calls in flight: halve on 429, grow while latency holds.")
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            envvar="SYNTH_CHECK",
            help="Before the run, check each OpenAI-compatible endpoint (reachable, model served, structured "
            "mode; as `synth check`); --no-check (or SYNTH_CHECK=0) skips it.",
        ),
    ] = True,
    trace: Annotated[
        bool, typer.Option(help="Print each row's node events live (role outputs, tokens, seconds).")
    ] = False,
    progress_every: Annotated[
        float,
        typer.Option(
            min=0,
            help="When stdout is not a terminal (nohup, CI, Slurm), print a progress line every this many "
            "seconds (0: never).",
        ),
    ] = DEFAULT_EVERY_S,
    executor: Annotated[
        Executor, typer.Option(help="asyncio (this process) or ray (blocks on Ray actors; docs/ray.md).")
    ] = Executor.asyncio,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: RAY_ADDRESS, else a local cluster).")
    ] = None,
    ray_block_rows: Annotated[
        int, typer.Option(min=1, help="Rows per Ray block (one shard, one resume unit).")
    ] = 100,
    ray_actors: Annotated[
        int,
        typer.Option(min=1, help="Ray actors; each runs one block at a time, --concurrency rows in flight."),
    ] = 2,
    verbose: Annotated[
        bool, typer.Option(help="Also print library warnings and tracebacks (always in log.jsonl).")
    ] = False,
    fail_on_error: Annotated[
        bool, typer.Option(help="Exit with status 3 when some rows failed (default: 0 if any row succeeded).")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Worker processes sharing the run (default: min(cores, 4) for openai: backends given >= 32 "
            "calls and >= 1000 rows per worker, else 1). --max-calls and --concurrency are split among them.",
        ),
    ] = None,
) -> None:
    """Run GRAPH over the input rows into a run folder; re-running the same command resumes.

    GRAPH is a registered name, ``package.module:NAME`` / ``path/file.py:NAME``, or ``path/graph.yaml``."""
    from synth.engine.session import RunRequest, run_session

    options = _parse_options(option)
    if corpus is not None:
        options["corpus"] = str(corpus)
    request = RunRequest(
        graph=graph,
        input=input,
        out=out,
        models=_parse_models(model),
        options=options,
        sampling=_parse_sampling(sampling),
        limit=limit,
        concurrency=concurrency,
        max_calls=max_calls or 2 * concurrency,
        timeout=timeout,
        retries=retries,
        call_budget=call_budget,
        backoff=backoff,
        max_field_bytes=max_field_bytes,
        **({} if max_reply_bytes is None else {"max_reply_bytes": max_reply_bytes}),
        api_key_env=api_key_env,
        force=force,
        new=new,
        add_input=add_input,
        retry_failed=retry_failed,
        cache=cache,
        checkpoints=checkpoints,
        adaptive=adaptive,
        check=check,
        trace=trace,
        progress_every=0.0 if sys.stdout.isatty() else progress_every,  # a terminal has the live bar
        executor=executor.value,
        ray_address=address,
        ray_block_rows=ray_block_rows,
        ray_actors=ray_actors,
        workers=workers,
    )
    from synth.cli import console as terminal

    with terminal.terminal_library_logs(verbose):
        try:
            summary, folder = asyncio.run(run_session(request, console))
        except KeyboardInterrupt:
            terminal.print_interrupted(console, out)
            raise typer.Exit(terminal.EXIT_INTERRUPTED) from None
    console.print(
        f"[bold]{folder}[/]: wrote {summary.written} ({_in_status_order(summary.counts)}), "
        f"skipped {summary.skipped} "
        f"already done, {summary.usage.total_tokens} tokens in {summary.elapsed_s:.1f}s"
    )
    terminal.print_failure_summary(console, folder, terminal.failures_since_last_start(folder / "log.jsonl"))
    status = terminal.exit_status(summary.counts, fail_on_error=fail_on_error)
    if status:
        raise typer.Exit(status)


app.command("export")(export_command)
app.command("filter")(filter_command)


@app.command()
def status(
    run_dir: Annotated[Path, typer.Argument(help="Run folder.")],
    price_in: Annotated[
        float | None, typer.Option(help="Price per 1M prompt tokens (shows the cost).")
    ] = None,
    price_out: Annotated[
        float | None, typer.Option(help="Price per 1M completion tokens (shows the cost).")
    ] = None,
) -> None:
    """Counts by status, failed rows by kind, tokens (and cost), and the last run's rate and retries."""
    from synth.engine.status import read_status, render_status

    render_status(read_status(run_dir), Console(), price_in=price_in, price_out=price_out)


@models_app.command("path")
def models_path(name: Annotated[str, typer.Argument(help="Built-in model name, e.g. gemma-3-270m.")]) -> None:
    """Print the local HF folder of a built-in model (converting it once if needed)."""
    from synth.models.local import model_path

    print(model_path(name))


@models_app.command("serve-folder")
def models_serve_folder(
    name: Annotated[str, typer.Argument(help="Built-in model name (gemma-3-270m) or a HF model folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to create (links + chat template).")],
) -> None:
    """A folder `transformers serve` / vLLM can serve: the model's files linked, plus the project's chat
    template when the model has none. Prints its path."""
    from synth.models.local import model_path
    from synth.serving import serve_folder

    folder = Path(name).expanduser()
    print(serve_folder(folder if folder.is_dir() else model_path(name), out))


def main() -> None:
    try:
        check_project_packages()
        app()
    except (SynthError, ValueError, ModuleNotFoundError) as exc:
        error = missing_extra(exc) or exc  # an optional module imported deeper than its command's check
        if isinstance(error, ModuleNotFoundError):
            raise
        # unwrapped: paths stay greppable; escaped: brackets in messages (pip extras, paths) are not markup
        console.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
        raise SystemExit(2) from None


def _in_status_order(counts: dict[str, int]) -> dict[str, int]:
    """Counts as ok, failed, filtered: a fixed order, whichever row finished first."""
    order = ("ok", "failed", "filtered")
    return dict(sorted(counts.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
