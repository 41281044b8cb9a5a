"""Hostile seed files: bad bytes, lone surrogates, a BOM, huge fields: one bad line never costs the others."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.engine.inputs import DEFAULT_MAX_FIELD_BYTES, read_rows
from synth.engine.session import run_session
from synth.engine.store import RunStore
from synth.errors import InputError
from tests.hostile.support import echo_graph, request, seeds


def _write(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def test_invalid_utf8_fails_only_that_line_naming_file_line_and_byte(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "s.jsonl", b'{"question": "fine"}', b'{"question": "caf\xe9 \xff"}', b'{"question": "ok"}'
    )
    rows = list(read_rows(path))
    assert [r.error is None for r in rows] == [True, False, True]
    assert rows[1].error == (
        f"{path}:2: not valid UTF-8 (byte 0xe9 at column 18); re-save the file as UTF-8 or fix the line"
    )
    assert rows[1].source == f"{path}:2" and "caf" in rows[1].data["_raw"]  # kept, readable, for the record


def test_a_lone_surrogate_escape_fails_only_that_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "s.jsonl",
        b'{"question": "half \\ud800 of a pair"}',
        b'{"question": "a whole pair \\ud83d\\ude00 is fine"}',
        b'{"nested": {"deep": ["\\udfff"]}, "question": "x"}',
    )
    rows = list(read_rows(path))
    assert rows[0].error and rows[0].error.startswith(f"{path}:1: a string holds a lone UTF-16 surrogate")
    assert rows[1].error is None and rows[1].data["question"].endswith("\U0001f600 is fine")
    assert rows[2].error and f"{path}:3:" in rows[2].error
    json.dumps(rows[0].data).encode("utf-8")  # what is stored for the failed row is encodable text


def test_a_bom_does_not_cost_the_first_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.jsonl", b'\xef\xbb\xbf{"question": "first"}', b'{"question": "second"}')
    rows = list(read_rows(path))
    assert [r.error for r in rows] == [None, None]
    assert rows[0].data == {"question": "first"} and rows[0].source == f"{path}:1"


def test_an_oversized_field_fails_its_row_naming_the_limit_and_the_flag(tmp_path: Path) -> None:
    big = "x" * 5000
    path = seeds(tmp_path / "s.jsonl", ["small", big, "é" * 600])
    rows = list(read_rows(path, max_field_bytes=1000))
    assert [r.error is None for r in rows] == [True, False, False]  # 600 x 'é' is 1200 bytes
    assert rows[1].error == (
        f"{path}:2: field 'question' is 5000 bytes, over the 1000-byte limit of an input field; "
        "shorten it, or raise the limit with --max-field-bytes"
    )
    assert len(json.dumps(rows[1].data)) < 2100  # the failed record does not carry the huge field
    assert DEFAULT_MAX_FIELD_BYTES >= 1_000_000
    with pytest.raises(InputError, match="--max-field-bytes must be >= 1"):
        list(read_rows(path, max_field_bytes=0))


def test_oversized_parquet_field_fails_its_row(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "s.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "ok"}, {"question": "y" * 3000}]), path)
    rows = list(read_rows(path, max_field_bytes=1000))
    assert rows[0].error is None and rows[1].error and "--max-field-bytes" in rows[1].error


async def test_a_run_over_hostile_lines_stores_every_line_and_runs_the_good_ones(
    tmp_path: Path, openai_server: Any
) -> None:
    path = _write(
        tmp_path / "s.jsonl",
        b'\xef\xbb\xbf{"question": "one"}',
        b'{"question": "\xc3\x28"}',
        b'{"question": "\\ud800"}',
        b'{"question": "' + b"z" * 3000 + b'"}',
        b'{"question": "five"}',
    )
    summary, folder = await run_session(request(tmp_path, openai_server, path, max_field_bytes=2000))
    assert dict(summary.counts) == {"ok": 2, "failed": 3}
    store = RunStore(folder)
    failed = {t.source: t.error for t in store.iter_records(status="failed")}
    assert sorted(failed) == [f"{path}:2", f"{path}:3", f"{path}:4"]
    assert all(error and error.startswith(source) for source, error in failed.items())
    assert (folder / "records.sqlite").stat().st_size < 200_000


def test_a_missing_input_leaves_no_run_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    outcome = CliRunner().invoke(
        app,
        ["run", str(echo_graph(tmp_path)), "-i", str(tmp_path / "nope.jsonl"), "-o", str(out),
         "-m", "openai:m@http://127.0.0.1:9/v1"],
    )  # fmt: skip
    assert isinstance(outcome.exception, InputError) and "nope.jsonl does not exist" in str(outcome.exception)
    assert not out.exists()


def test_the_ray_reader_fails_the_same_lines_alone(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    import pyarrow as pa

    from synth.engine.inputs import parse_jsonl_bytes
    from synth.executors.ray_input import JsonlLines

    path = _write(
        tmp_path / "s.jsonl",
        b'\xef\xbb\xbf{"question": "one"}',
        b'{"question": "caf\xe9"}',
        b"",
        b'{"question": "\\ud800"}\r',
        b'{"question": "' + b"z" * 3000 + b'"}',
        b'{"question": "six"}',
    )
    # the datasource's reader, called directly: no Ray instance is started for this
    tables = list(JsonlLines._read_stream(None, pa.OSFile(str(path)), str(path)))  # type: ignore[arg-type]
    columns = pa.concat_tables(tables).to_pydict()
    rows = [
        parse_jsonl_bytes(f"{path}:{n}", raw, 2000)
        for n, raw in zip(columns["line"], columns["text"], strict=True)
    ]
    assert rows == list(read_rows(path, max_field_bytes=2000))  # same rows, same errors, same sources
    assert [r.error is None for r in rows] == [True, False, False, False, True]


def test_a_folder_or_an_unknown_file_type_as_input_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(InputError, match=r"is a folder; pass one \.jsonl or \.parquet file"):
        list(read_rows(tmp_path / "dir"))
    (tmp_path / "seeds.csv").write_text("a,b\n")
    with pytest.raises(InputError, match=r"unsupported file type '\.csv'"):
        list(read_rows(tmp_path / "seeds.csv"))
