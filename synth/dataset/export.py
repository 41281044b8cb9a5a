"""Trajectories -> TRL-ready Hugging Face datasets (parquet + a dataset card).

Every graph exports through one registry, :func:`formats_for`: the standard formats of
:mod:`synth.dataset.reuse` (``sft``, ``dpo``, ``corrections``, ``rl``) overlaid with the graph's own (same
name: the graph's wins). Rows are streamed from the run's store into a parquet file with an explicit schema,
so a 100k-row export never sits in memory and an export with zero rows is still a valid, typed dataset. With
``--split`` or ``--shuffle`` the streamed rows are then read back once (Arrow, memory-mapped) and written per
split. The export says how many rows it wrote and, when none, why.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synth.dataset.card import EXPORT_MARK, CardData, data_file, render_card
from synth.dataset.formats import dpo_features, sft_features, user_turn
from synth.dataset.outputs import OutputKind, check_output_folder
from synth.dataset.reuse import standard_exports
from synth.dataset.splits import assign
from synth.engine.status import read_status
from synth.engine.store import RunLock, RunStore
from synth.errors import ExportError
from synth.filters import read_summary
from synth.graph import ExportFormat, SynthGraph
from synth.sampling import effective_sampling, truncated_steps

__all__ = [
    "ExportOptions",
    "ExportResult",
    "dpo_features",
    "export_run",
    "formats_for",
    "sft_features",
    "user_turn",
]

#: An export folder: the card (README.md, marked) and data/*.parquet; only such a folder is replaced.
EXPORT = OutputKind(
    "synth export",
    "README.md",
    (EXPORT_MARK, "Synthesized with synth (pip install agentsynth) by the"),  # the latter: older cards
    owns=lambda entry: (
        (entry.name == "README.md" and entry.is_file())
        or (entry.name == "data" and entry.is_dir() and all(f.suffix == ".parquet" for f in entry.iterdir()))
    ),
)
ROWS_PER_BATCH = 1000
#: Rows whose text the card's language detection reads.
LANGUAGE_SAMPLE = 200


def formats_for(graph: SynthGraph) -> dict[str, ExportFormat]:
    """Every format ``graph`` supports: the standard ones, then the graph's own (which win on a name)."""
    return {**standard_exports(), **graph.exports}


@dataclass(frozen=True)
class ExportOptions:
    """How to cut and describe an export (``synth export`` flags)."""

    splits: Mapping[str, float] = field(default_factory=dict)
    shuffle: bool = False
    seed: int = 0
    license: str = "other"
    seed_license: str = ""
    languages: tuple[str, ...] = ()  # empty: detected from the exported text
    #: Replace an earlier export in the output folder (``--overwrite``); other folders are never replaced.
    overwrite: bool = False
    #: Keep trajectories with a free-text reply cut by max_tokens (finish reason "length"); off by default.
    include_truncated: bool = False


@dataclass(frozen=True)
class ExportResult:
    format: str
    path: Path
    rows: int
    trajectories: int
    reason: str = ""
    splits: Mapping[str, int] = field(default_factory=dict)
    #: The run lock's holder when a run was still writing: the export is a partial snapshot.
    live_run: str | None = None
    truncated: int = 0

    def describe(self) -> str:
        left_out = (
            f"; {self.truncated} trajectories left out: a free-text reply was cut by max_tokens "
            "(raise --sampling max_tokens=N, or export them with --include-truncated)"
            if self.truncated
            else ""
        )
        live = (
            f"\nwarning: a run is still writing to the run folder ({self.live_run}): this export is a "
            "partial snapshot (the card says so); export again when the run has finished."
            if self.live_run
            else ""
        )
        return self._describe() + left_out + live

    def _describe(self) -> str:
        if self.rows:
            parts = (
                " + ".join(f"{n} {name}" for name, n in self.splits.items()) if len(self.splits) > 1 else ""
            )
            cut = f" ({parts})" if parts else ""
            return (
                f"{self.rows} {self.format} rows{cut} from {self.trajectories} ok trajectories -> {self.path}"
            )
        return (
            f"0 {self.format} rows -> {self.path}: {self.reason}. The folder holds a typed, empty parquet "
            "table (datasets.load_dataset refuses 0-row splits; pyarrow reads it)."
        )


@dataclass
class _Written:
    """What the writer produced: rows per split (file, count), trajectories read, a sample, some text."""

    files: dict[str, tuple[str, int]] = field(default_factory=dict)
    trajectories: int = 0
    sample: dict[str, Any] | None = None
    texts: list[str] = field(default_factory=list)
    truncated: int = 0

    @property
    def rows(self) -> int:
        return sum(n for _, n in self.files.values())


def export_run(
    run_dir: Path | str,
    graph: SynthGraph,
    format_name: str,
    out_dir: Path | str,
    options: ExportOptions | None = None,
) -> ExportResult:
    """Write ``format_name`` rows of the ok trajectories in ``run_dir`` to ``out_dir``."""
    options = options or ExportOptions()
    formats = formats_for(graph)
    fmt = formats.get(format_name)
    if fmt is None:
        raise ExportError(
            f"graph '{graph.name}' has no export format '{format_name}'; formats: {', '.join(formats)} "
            f"(`synth export {run_dir} --list-formats` describes them)"
        )
    out = Path(out_dir)
    check_output_folder(EXPORT, out, Path(run_dir), overwrite=options.overwrite)
    live_run = RunLock.holder(Path(run_dir))
    store = RunStore(run_dir)
    tmp: Path | None = None
    try:
        counts = store.counts()
        if not counts:
            raise ExportError(f"{run_dir} has no records yet; run `synth run` first.")
        applied, reasons = read_summary(run_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        written = _write(fmt, store, tmp, uuid.uuid4().hex[:12], options)
        card = render_card(
            CardData(
                format_name=format_name,
                format_description=fmt.description,
                files=written.files,
                config=store.read_config(),
                graph_description=graph.description,
                role_templates=graph.template_hashes(),
                role_sampling=effective_sampling(graph, (store.read_config() or {}).get("sampling") or {}),
                counts=counts,
                usage=_usage(run_dir),
                sample=written.sample,
                texts=written.texts,
                license=options.license,
                seed_license=options.seed_license,
                languages=options.languages,
                split_seed=options.seed if (options.splits or options.shuffle) else None,
                filter_reasons=reasons,
                filters_applied=applied,
                live_run=live_run,
            )
        )
        (tmp / "README.md").write_text(card, encoding="utf-8")
        shutil.rmtree(out, ignore_errors=True)  # checked above: missing, empty or an earlier export
        tmp.rename(out)
        tmp = None
    finally:
        store.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    reason = ""
    if written.rows == 0:
        reason = fmt.empty_reason if counts.get("ok") else f"no trajectory has status ok ({_counts(counts)})"
    splits = {name: n for name, (_, n) in written.files.items()}
    return ExportResult(
        format_name,
        out,
        written.rows,
        written.trajectories,
        reason,
        splits,
        live_run=live_run,
        truncated=written.truncated,
    )


def _write(fmt: ExportFormat, store: RunStore, tmp: Path, export_id: str, options: ExportOptions) -> _Written:
    """Stream rows into ``tmp/data``; with splits or shuffling, stream to a scratch file, then cut it."""
    (tmp / "data").mkdir(parents=True)
    if not options.splits and not options.shuffle:
        path = data_file(export_id, "train")
        written, group_of_row = _stream(fmt, store, tmp / path, options.include_truncated)
        written.files = {"train": (path, len(group_of_row))}
        return written
    scratch = tmp / "rows.parquet"
    written, group_of_row = _stream(fmt, store, scratch, options.include_truncated)
    written.files = _cut(fmt, scratch, tmp, export_id, group_of_row, options)
    scratch.unlink()
    return written


def _stream(
    fmt: ExportFormat, store: RunStore, path: Path, include_truncated: bool
) -> tuple[_Written, list[int]]:
    """Write every row of ``fmt`` to ``path``; returns what was written and each row's trajectory ordinal."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = fmt.features()
    schema = features.arrow_schema
    written = _Written()
    group_of_row: list[int] = []
    groups = 0
    with pq.ParquetWriter(path, schema) as writer:
        for batch, seen in _batches(fmt, store, include_truncated, written):
            written.trajectories += seen
            if not batch:
                continue
            written.sample = written.sample or batch[0][1]
            for ordinal, row in batch:
                group_of_row.append(groups + ordinal)
                if len(written.texts) < LANGUAGE_SAMPLE:
                    written.texts.append(" ".join(_strings(row)))
            groups = group_of_row[-1] + 1
            rows = [features.encode_example(row) for _, row in batch]
            writer.write_table(pa.Table.from_pylist(rows, schema))
    return written, group_of_row


def _cut(
    fmt: ExportFormat,
    scratch: Path,
    tmp: Path,
    export_id: str,
    group_of_row: list[int],
    options: ExportOptions,
) -> dict[str, tuple[str, int]]:
    import pyarrow.parquet as pq

    table = pq.read_table(scratch, memory_map=True)
    groups = group_of_row[-1] + 1 if group_of_row else 0
    files: dict[str, tuple[str, int]] = {}
    for name, rows in assign(
        group_of_row, groups, options.splits, shuffle=options.shuffle, seed=options.seed
    ).items():
        path = data_file(export_id, name)
        pq.write_table(table.take(rows) if rows else table.schema.empty_table(), tmp / path)
        files[name] = (path, len(rows))
    return files


def _strings(value: Any) -> Iterator[str]:
    """Every string in a row (message contents, answers...), for language detection; ids are skipped."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key not in ("id", "role", "name"):
                yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _usage(run_dir: Path | str) -> dict[str, int]:
    """Token totals of the whole run, summed in SQL by ``synth status``'s reader (no record is parsed)."""
    status = read_status(run_dir)
    return {
        "prompt_tokens": status.prompt_tokens,
        "completion_tokens": status.completion_tokens,
        "calls": status.calls,
    }


def _batches(
    fmt: ExportFormat, store: RunStore, include_truncated: bool, written: _Written
) -> Iterator[tuple[list[tuple[int, dict[str, Any]]], int]]:
    """Rows as (trajectory ordinal within the batch, row) with the ok trajectories the batch read.

    A trajectory with a free-text reply cut by max_tokens is left out (counted in ``written.truncated``)
    unless ``include_truncated``: a cut reply is a bad training target."""
    batch: list[tuple[int, dict[str, Any]]] = []
    seen = ordinal = 0
    for trajectory in store.iter_records(status="ok"):
        seen += 1
        if not include_truncated and truncated_steps(trajectory):
            written.truncated += 1
            continue
        rows = list(fmt.rows(trajectory))
        if rows:
            batch.extend((ordinal, row) for row in rows)
            ordinal += 1
        if len(batch) >= ROWS_PER_BATCH:
            yield batch, seen
            batch, seen, ordinal = [], 0, 0
    yield batch, seen


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
