"""``synth export`` and ``synth filter``: from a run folder's records to filtered, split, carded datasets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)


def _graph_of(run_dir: Path) -> object:
    from synth.engine.session import resolve_graph
    from synth.engine.store import RunStore

    store = RunStore(run_dir)
    try:
        return resolve_graph(store.read_config()["graph"])
    finally:
        store.close()


def export_command(
    run_dir: Annotated[Path, typer.Argument(help="Run folder.")],
    format: Annotated[
        str | None,
        typer.Option("--format", "-f", help="Export format; omit it to list the formats of the run's graph."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Output dataset folder: new or empty (or an earlier export with --overwrite)."
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an earlier export in --out (any other non-empty folder is refused).")
    ] = False,
    list_formats: Annotated[
        bool, typer.Option("--list-formats", help="List the formats the run's graph supports, and exit.")
    ] = False,
    split: Annotated[
        list[str],
        typer.Option(help="NAME=FRACTION or NAME=COUNT (e.g. test=0.1), repeatable; train keeps the rest."),
    ] = [],  # noqa: B006
    shuffle: Annotated[bool, typer.Option(help="Shuffle the rows of each split (with --seed).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the split draw and of --shuffle.")] = 0,
    license: Annotated[str, typer.Option(help="License of the dataset, for the card (SPDX id).")] = "other",
    seed_license: Annotated[
        str, typer.Option(help="License of the seed data (e.g. ODC-By-1.0), stated in the card.")
    ] = "",
    language: Annotated[
        list[str], typer.Option(help="Language code for the card, repeatable (default: detected).")
    ] = [],  # noqa: B006
    include_truncated: Annotated[
        bool,
        typer.Option(
            help="Keep trajectories with a free-text reply cut by max_tokens (left out by default)."
        ),
    ] = False,
) -> None:
    """Export a run's ok trajectories as a Hugging Face dataset (parquet + card) for load_dataset(OUT)."""
    from synth.dataset.export import ExportOptions, export_run, formats_for
    from synth.dataset.splits import parse_split
    from synth.graph import SynthGraph

    graph = _graph_of(run_dir)
    assert isinstance(graph, SynthGraph)
    if list_formats or format is None:
        formats = formats_for(graph)
        width = max(map(len, formats))
        print(f"export formats of graph '{graph.name}':")
        for name, fmt in formats.items():
            print(f"  {name:<{width}}  {fmt.description}")
        if format is None and not list_formats:
            console.print(f"choose one: synth export {run_dir} --format NAME --out DIR")
        return
    if out is None:
        raise typer.BadParameter("give the dataset folder to write", param_hint="--out")
    options = ExportOptions(
        splits=dict(parse_split(s) for s in split),
        shuffle=shuffle,
        seed=seed,
        license=license,
        seed_license=seed_license,
        languages=tuple(language),
        overwrite=overwrite,
        include_truncated=include_truncated,
    )
    console.print(export_run(run_dir, graph, format, out, options).describe(), markup=False, highlight=False)


def filter_command(
    run_dir: Annotated[Path, typer.Argument(help="Run folder.")],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Filters YAML (a `filters:` list).")
    ] = None,
    filter: Annotated[
        list[str],
        typer.Option(help='"KIND key=value ..." e.g. "length field=result.answer min_chars=2"; repeatable.'),
    ] = [],  # noqa: B006
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model spec of judge filters that name none.")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", min=1, help="Rows judged at once (default: the run's).")
    ] = None,
    max_calls: Annotated[
        int | None, typer.Option(min=1, help="Judge calls in flight (default: the run's).")
    ] = None,
    timeout: Annotated[float | None, typer.Option(min=0.001, help="Seconds per judge call attempt.")] = None,
    retries: Annotated[
        int | None, typer.Option(min=0, help="Retries per judge call on 429/5xx/timeouts.")
    ] = None,
    api_key_env: Annotated[str | None, typer.Option(help="Env var holding the judge's API key.")] = None,
    cache: Annotated[
        bool, typer.Option(help="Reuse judge calls from the run's call cache (re-applying never pays twice).")
    ] = True,
) -> None:
    """Re-apply filters to a run's records; failing rows become `filtered` with the reason (never deleted).

    No generator is called; judge filters call their model through the run's call cache."""
    from synth.filters import FilterOptions, apply_filters, build_config

    if config is None and not filter:
        raise typer.BadParameter(
            "give --config FILE and/or --filter SPEC (a config with `filters: []` restores every row)",
            param_hint="--config",
        )
    options = FilterOptions(
        model=model,
        concurrency=concurrency,
        max_calls=max_calls,
        timeout=timeout,
        retries=retries,
        api_key_env=api_key_env,
        cache=cache,
    )
    report = asyncio.run(apply_filters(run_dir, build_config(config, filter), options))
    console.print(report.describe())
