"""Seed rows through Ray Data: a jsonl file, a parquet file or folder, or a ``datasets.save_to_disk`` folder.

Rows come out in input order, in blocks of a fixed number of rows, as the same :class:`SeedRow` values
(same data, same ``file:line`` source, same broken-line errors) that :func:`synth.engine.inputs.read_rows`
gives the asyncio executor - so both executors compute the same trajectory ids. Ray's own ``read_json`` would
not do: it fails the whole read on one broken line, loses line numbers, and unifies rows into one Arrow
schema (a key missing from one row comes back as ``None``, which changes the row and its id). jsonl is
therefore read as numbered text lines by :class:`JsonlLines` and parsed by ``synth.engine.inputs``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray.data
from ray.data.datasource import FileBasedDatasource

from synth.engine.inputs import DEFAULT_MAX_FIELD_BYTES, SeedRow, jsonl_lines, parse_jsonl_bytes, sized
from synth.errors import InputError

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
LINES_PER_BLOCK = 4096


class JsonlLines(FileBasedDatasource):
    """Non-blank lines of text files with their 1-based line numbers (columns ``line``, ``text`` as bytes).

    Lines are split at ``\\n`` exactly as :func:`synth.engine.inputs.jsonl_lines` splits them for the asyncio
    executor (not with ``str.splitlines``, Ray's ``read_text``, which also splits inside JSON strings at
    U+2028 and friends); and streamed in blocks instead of decoding the whole file at once.
    """

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        numbers: list[int] = []
        lines: list[bytes] = []
        for number, line in jsonl_lines(io.BufferedReader(f)):  # type: ignore[arg-type]
            numbers.append(number)
            lines.append(line)
            if len(lines) >= LINES_PER_BLOCK:
                yield _lines_table(numbers, lines)
                numbers, lines = [], []
        if lines:
            yield _lines_table(numbers, lines)


def _lines_table(numbers: list[int], lines: list[bytes]) -> pa.Table:
    """Lines as bytes (a line that is not UTF-8 must reach the parser, which fails that row alone)."""
    return pa.table({"line": numbers, "text": pa.array(lines, pa.binary())})


def read_dataset(path: Path) -> ray.data.Dataset:
    """The input as a Ray Dataset whose batches keep the input order."""
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    resolved = str(path.resolve())
    if path.is_file() and path.suffix.lower() in JSONL_SUFFIXES:
        dataset = ray.data.read_datasource(JsonlLines(resolved))
    elif path.is_file() and path.suffix.lower() == ".parquet":
        dataset = ray.data.read_parquet(resolved)
    elif path.is_dir() and (path / "dataset_info.json").exists():
        dataset = ray.data.read_datasource(ArrowStreamFiles(_arrow_files(path)))
    elif path.is_dir() and any(path.glob("*.parquet")):
        dataset = ray.data.read_parquet(resolved, file_extensions=["parquet"])
    else:
        raise InputError(
            f"input {path}: use a .jsonl or .parquet file, a folder of .parquet files, or a folder written "
            "by datasets' save_to_disk"
        )
    # synth shows its own progress; Ray Data's per-dataset INFO lines and "progress bars disabled" are noise
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    context = dataset.context
    context.execution_options.preserve_order = True  # block k must be the same rows on every run
    context.enable_progress_bars = False  # synth shows its own progress
    context.print_on_execution_start = False
    return dataset


class ArrowStreamFiles(FileBasedDatasource):
    """Arrow IPC stream files (what ``datasets.Dataset.save_to_disk`` writes), record batch by record batch.

    Ray's ``from_huggingface`` would need aiohttp and puts the whole table into the object store at once.
    """

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        for batch in pa.ipc.open_stream(f):
            yield pa.Table.from_batches([batch])


def _arrow_files(path: Path) -> list[str]:
    """The data files of a ``save_to_disk`` folder, in row order (a ``DatasetDict``: its train split)."""
    import datasets

    loaded: Any = datasets.load_from_disk(str(path))  # memory-maps; reads no rows
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise InputError(f"input {path} holds splits {sorted(loaded)}; pass one split's folder")
        loaded = loaded["train"]
    return [str(Path(entry["filename"]).resolve()) for entry in loaded.cache_files]


def iter_blocks(
    path: Path, block_rows: int, limit: int | None = None, max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES
) -> Iterator[tuple[int, list[SeedRow]]]:
    """``(first row index, rows)`` for consecutive blocks of ``block_rows`` rows (the last may be shorter)."""
    dataset = read_dataset(path)
    if limit is not None:
        dataset = dataset.limit(limit)
    jsonl = path.is_file() and path.suffix.lower() in JSONL_SUFFIXES
    numbers = count(1)
    start = 0
    for batch in dataset.iter_batches(batch_size=block_rows, batch_format="pyarrow", prefetch_batches=1):
        assert isinstance(batch, pa.Table)
        if jsonl:
            columns = batch.to_pydict()
            lines = zip(columns["line"], columns["text"], strict=True)
            rows = [parse_jsonl_bytes(f"{path}:{number}", raw, max_field_bytes) for number, raw in lines]
        else:
            rows = [
                sized(SeedRow(f"{path}:row {next(numbers)}", data), max_field_bytes)
                for data in batch.to_pylist()
            ]
        yield start, rows
        start += len(rows)
