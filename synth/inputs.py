"""Seed rows, read lazily, each with where it came from (``file:line``) so errors can point at it.

A line that is not JSON, or a row that does not match the graph's seed model, becomes a ``SeedRow``
with ``error`` set: the runner stores it as a failed trajectory (nothing is silently dropped) and the
other rows keep going.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from synth.errors import InputError


@dataclass(frozen=True)
class SeedRow:
    source: str
    data: dict[str, Any]
    error: str | None = None


def read_rows(path: Path | str, seed_model: type[BaseModel] | None = None) -> Iterator[SeedRow]:
    """Rows of a ``.jsonl`` or ``.parquet`` file, validated against ``seed_model`` when given."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        rows = _jsonl_rows(path)
    elif suffix == ".parquet":
        rows = _parquet_rows(path)
    else:
        raise InputError(f"input {path}: unsupported file type {suffix!r}; use .jsonl or .parquet")
    for row in rows:
        yield row if row.error or seed_model is None else validate_row(row, seed_model)


def validate_row(row: SeedRow, seed_model: type[BaseModel]) -> SeedRow:
    try:
        seed_model.model_validate(row.data)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(map(str, e['loc'])) or '<row>'}': {_message(e)}" for e in exc.errors()
        )
        return SeedRow(row.source, row.data, f"{row.source}: {problems}")
    return row


def _message(error: Any) -> str:
    if error["type"] == "missing":
        return "missing (every row needs it)"
    return f"{error['msg']} (got {json.dumps(error.get('input'), default=str)[:80]})"


def _jsonl_rows(path: Path) -> Iterator[SeedRow]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield parse_jsonl_line(f"{path}:{number}", line)


def parse_jsonl_line(source: str, line: str) -> SeedRow:
    """One non-blank jsonl line as a row; a broken one as a row with ``error`` (the Ray reader shares it)."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        return SeedRow(
            source,
            {"_raw": line[:2000]},
            f"{source}: not valid JSON ({exc.msg} at column {exc.colno}); fix the line or remove it",
        )
    if not isinstance(data, dict):
        return SeedRow(
            source, {"_raw": line[:2000]}, f"{source}: a row must be a JSON object, got {type(data).__name__}"
        )
    return SeedRow(source, data)


def _parquet_rows(path: Path) -> Iterator[SeedRow]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for data in batch.to_pylist():
            number += 1
            yield SeedRow(f"{path}:row {number}", data)


def count_rows(path: Path | str) -> int | None:
    """Row count for the progress bar (cheap for jsonl and parquet); None when unknown."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())
