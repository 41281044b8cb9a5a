"""Seed rows, read lazily, each with where it came from (``file:line``) so errors can point at it.

A line that is not JSON, not UTF-8, holds a lone surrogate escape (``"\\ud800"``: not text, SQLite and
parquet cannot store it), has a field over the size limit, or does not match the graph's seed model,
becomes a ``SeedRow`` with ``error`` set (``file:line: what is wrong; how to fix it``): the runner stores
it as a failed trajectory (nothing is silently dropped) and the other rows keep going. A UTF-8 byte order
mark at the start of a file is skipped.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import yaml
from pydantic import BaseModel, ValidationError

from synth.errors import InputError

#: Largest input field (a string, in UTF-8 bytes) a row may carry: ``--max-field-bytes``. A 5 MB field
#: is copied into every prompt, step and checkpoint of its row (measured: a 430 MB run folder).
DEFAULT_MAX_FIELD_BYTES = 2 * 1024 * 1024
#: What a failed row keeps of its line (enough to find and fix it, never a huge field).
RAW_KEPT = 2000
_BOM = b"\xef\xbb\xbf"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


@dataclass(frozen=True)
class SeedRow:
    source: str
    data: dict[str, Any]
    error: str | None = None


def check_input(path: Path | str, *, folder_ok: bool = False) -> Path:
    """``path`` if it is a readable input; else the error ``synth run`` gives before it creates anything
    (a missing input must not leave an empty run folder behind). ``folder_ok``: the Ray executor also
    reads a folder of parquet files or a ``save_to_disk`` folder."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input file {path} does not exist")
    if path.is_dir():
        if folder_ok:
            return path
        raise InputError(
            f"input {path} is a folder; pass one .jsonl or .parquet file (a folder of parquet files or a "
            "datasets save_to_disk folder is read by --executor ray)"
        )
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".ndjson", ".parquet"):
        raise InputError(f"input {path}: unsupported file type {suffix!r}; use .jsonl or .parquet")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise InputError(f"input file {path} cannot be read: {exc.strerror}") from None
    return path


def read_rows(
    path: Path | str,
    seed_model: type[BaseModel] | None = None,
    *,
    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES,
) -> Iterator[SeedRow]:
    """Rows of a ``.jsonl`` or ``.parquet`` file, validated against ``seed_model`` when given."""
    path = check_input(path)
    if max_field_bytes < 1:
        raise InputError(f"--max-field-bytes must be >= 1 (got {max_field_bytes})")
    rows: Iterator[SeedRow]
    if path.suffix.lower() == ".parquet":
        rows = (sized(row, max_field_bytes) for row in _parquet_rows(path))
    else:
        rows = _jsonl_rows(path, max_field_bytes)
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


def _jsonl_rows(path: Path, max_field_bytes: int) -> Iterator[SeedRow]:
    with path.open("rb") as handle:
        for number, raw in jsonl_lines(handle):
            yield parse_jsonl_bytes(f"{path}:{number}", raw, max_field_bytes)


def jsonl_lines(handle: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines as bytes with their 1-based numbers, a leading UTF-8 BOM removed. Bytes, not text:
    decoding line by line lets a line that is not UTF-8 fail alone (both executors read jsonl so)."""
    for number, raw in enumerate(handle, start=1):
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if raw.strip():
            yield number, raw


def parse_jsonl_bytes(source: str, raw: bytes, max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES) -> SeedRow:
    """One non-blank line's bytes as a row: a line that is not UTF-8 is a failed row naming the byte."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return SeedRow(
            source,
            {"_raw": raw[:RAW_KEPT].decode("utf-8", "replace")},
            f"{source}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
            "re-save the file as UTF-8 or fix the line",
        )
    return parse_jsonl_line(source, line, max_field_bytes)


def parse_jsonl_line(source: str, line: str, max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES) -> SeedRow:
    """One non-blank jsonl line as a row; a broken one as a row with ``error`` (the Ray reader shares it)."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        return _broken(
            source, line, f"not valid JSON ({exc.msg} at column {exc.colno}); fix the line or remove it"
        )
    if not isinstance(data, dict):
        return _broken(source, line, f"a row must be a JSON object, got {type(data).__name__}")
    if _SURROGATE_ESCAPE.search(line) and _lone_surrogate(data):
        return _broken(
            source,
            line,
            "a string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff outside a pair), which is not "
            "text; fix or remove the escape",
        )
    if len(line) > max_field_bytes // 4:  # a shorter line cannot hold a field over the limit
        return sized(SeedRow(source, data), max_field_bytes, line)
    return SeedRow(source, data)


def _broken(source: str, line: str, why: str) -> SeedRow:
    return SeedRow(source, {"_raw": line[:RAW_KEPT]}, f"{source}: {why}")


def _lone_surrogate(value: Any) -> bool:
    """Whether any string in ``value`` (keys included) cannot be encoded as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_lone_surrogate(item) for item in value)
    return False


def sized(row: SeedRow, limit: int, line: str = "") -> SeedRow:
    """``row``, or a failed row naming the first field over ``limit`` bytes (its value is not kept)."""
    found = _oversized(row.data, limit, ())
    if found is None:
        return row
    where, size = found
    raw = line[:RAW_KEPT] if line else json.dumps(row.data, default=str)[:RAW_KEPT]
    return SeedRow(
        row.source,
        {"_raw": raw},
        f"{row.source}: field '{'.'.join(where) or '<row>'}' is {size} bytes, over the {limit}-byte limit of "
        "an input field; shorten it, or raise the limit with --max-field-bytes",
    )


def _oversized(value: Any, limit: int, where: tuple[str, ...]) -> tuple[tuple[str, ...], int] | None:
    if isinstance(value, str | bytes):
        if len(value) * 4 <= limit:  # UTF-8 needs at most 4 bytes a character
            return None
        size = len(value) if isinstance(value, bytes) else len(value.encode("utf-8", "surrogatepass"))
        return (where, size) if size > limit else None
    if isinstance(value, dict):
        items: Iterator[tuple[str, Any]] = ((str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return None
    for key, item in items:
        found = _oversized(item, limit, (*where, key))
        if found is not None:
            return found
    return None


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


# -- the inputs a run folder was made from ----------------------------------------------------------------
def input_record(path: Path) -> dict[str, str]:
    """An input as config.yaml records it: the path given and the sha256 of its content (a dataset
    folder: of its files, by relative path), so a moved file is still the same input."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file != path:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return {"path": str(path), "sha256": digest.hexdigest()}


def recorded_inputs(folder: Path) -> list[dict[str, str]]:
    """The inputs a run folder was made from (a folder from before they were recorded: its ``input``)."""
    path = folder / "config.yaml"
    if not path.exists():
        return []
    config = yaml.safe_load(path.read_text()) or {}
    inputs = config.get("inputs")
    if isinstance(inputs, list):
        return [dict(i) for i in inputs if isinstance(i, dict) and "path" in i]
    return [{"path": str(config["input"]), "sha256": ""}] if config.get("input") else []


def same_input(a: dict[str, str], b: dict[str, str]) -> bool:
    """The same file (its path resolves alike) or the same content (a copy or a moved file)."""
    if a.get("sha256") and a.get("sha256") == b.get("sha256"):
        return True
    return Path(a["path"]).resolve() == Path(b["path"]).resolve()
