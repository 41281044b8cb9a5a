"""Trajectories -> TRL-ready Hugging Face datasets (parquet + a dataset card).

Rows are streamed from the run's store into a parquet file with an explicit schema, so a 100k-row export
never sits in memory and an export with zero rows is still a valid, typed dataset that
``datasets.load_dataset(DIR)`` loads. The export says how many rows it wrote and, when none, why.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synth.card import data_file, render_card
from synth.errors import ExportError
from synth.graph import ExportFormat, SynthGraph
from synth.status import read_status
from synth.store import RunStore

ROWS_PER_BATCH = 1000


def _message_list() -> Any:
    from datasets import List, Value

    return List({"role": Value("string"), "content": Value("string")})


def sft_features() -> Any:
    from datasets import Features, Value

    return Features({"id": Value("string"), "messages": _message_list()})


def dpo_features() -> Any:
    from datasets import Features, Value

    return Features(
        {
            "id": Value("string"),
            "prompt": _message_list(),
            "chosen": _message_list(),
            "rejected": _message_list(),
        }
    )


def user_turn(instruction: str, input_text: str = "") -> dict[str, str]:
    """The user message of an Alpaca-style seed: the instruction, then its input when there is one."""
    content = f"{instruction}\n\n{input_text}" if input_text else instruction
    return {"role": "user", "content": content}


@dataclass(frozen=True)
class ExportResult:
    format: str
    path: Path
    rows: int
    trajectories: int
    reason: str = ""

    def describe(self) -> str:
        if self.rows:
            return f"{self.rows} {self.format} rows from {self.trajectories} ok trajectories -> {self.path}"
        return (
            f"0 {self.format} rows -> {self.path}: {self.reason}. The folder holds a typed, empty parquet "
            "table (datasets.load_dataset refuses 0-row splits; pyarrow reads it)."
        )


def export_run(run_dir: Path | str, graph: SynthGraph, format_name: str, out_dir: Path | str) -> ExportResult:
    """Write ``format_name`` rows of the ok trajectories in ``run_dir`` to ``out_dir``."""
    fmt = graph.exports.get(format_name)
    if fmt is None:
        raise ExportError(
            f"graph '{graph.name}' has no export format '{format_name}'; formats: {', '.join(graph.exports)}"
        )
    store = RunStore(run_dir)
    out = Path(out_dir)
    try:
        counts = store.counts()
        if not counts:
            raise ExportError(f"{run_dir} has no records yet; run `synth run` first.")
        tmp = out.with_name(out.name + ".tmp")
        data_path = data_file(uuid.uuid4().hex[:12])
        rows, trajectories, sample = _write_parquet(fmt, store, tmp, data_path)
        card = render_card(
            format_name=format_name,
            data_path=data_path,
            rows=rows,
            config=store.read_config(),
            graph_description=graph.description,
            role_templates=graph.template_hashes(),
            counts=counts,
            usage=_usage(run_dir),
            sample=sample,
        )
        (tmp / "README.md").write_text(card, encoding="utf-8")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        store.close()
    reason = ""
    if rows == 0:
        reason = fmt.empty_reason if counts.get("ok") else f"no trajectory has status ok ({_counts(counts)})"
    return ExportResult(format_name, out, rows, trajectories, reason)


def _write_parquet(
    fmt: ExportFormat, store: RunStore, tmp: Path, data_path: str
) -> tuple[int, int, dict[str, Any] | None]:
    """Stream rows into ``tmp/data``; returns (rows, ok trajectories seen, the first row as a sample)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = fmt.features()
    schema = features.arrow_schema
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    rows = trajectories = 0
    sample: dict[str, Any] | None = None
    with pq.ParquetWriter(tmp / data_path, schema) as writer:
        for batch, seen in _batches(fmt, store):
            trajectories += seen
            if batch:
                sample = sample or batch[0]
                writer.write_table(pa.Table.from_pylist([features.encode_example(r) for r in batch], schema))
                rows += len(batch)
    return rows, trajectories, sample


def _usage(run_dir: Path | str) -> dict[str, int]:
    """Token totals of the whole run, summed in SQL by ``synth status``'s reader (no record is parsed)."""
    status = read_status(run_dir)
    return {
        "prompt_tokens": status.prompt_tokens,
        "completion_tokens": status.completion_tokens,
        "calls": status.calls,
    }


def _batches(fmt: ExportFormat, store: RunStore) -> Iterator[tuple[list[dict[str, Any]], int]]:
    batch: list[dict[str, Any]] = []
    seen = 0
    for trajectory in store.iter_records(status="ok"):
        seen += 1
        batch.extend(fmt.rows(trajectory))
        if len(batch) >= ROWS_PER_BATCH:
            yield batch, seen
            batch, seen = [], 0
    yield batch, seen


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
