"""Seed rows: lazy reading with file:line, validation errors that name the field, nothing dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphs.coevol.graph import CoEvolSeed
from synth.engine.inputs import count_rows, read_rows
from synth.errors import InputError


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_json_missing_field_and_wrong_type_name_file_and_line(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "seeds.jsonl",
        [
            json.dumps({"instruction": "ok row"}),
            '{"instruction": "broken", ',
            json.dumps({"input": "no instruction here"}),
            json.dumps({"instruction": ["not", "a", "string"]}),
            "",
            json.dumps({"instruction": "last ok row"}),
        ],
    )
    rows = list(read_rows(path, CoEvolSeed))
    assert [r.error is None for r in rows] == [True, False, False, False, True]
    assert rows[1].error.startswith(f"{path}:2: not valid JSON")
    assert rows[2].error == f"{path}:3: field 'instruction': missing (every row needs it)"
    assert rows[3].error.startswith(f"{path}:4: field 'instruction': Input should be a valid string")
    assert rows[4].source == f"{path}:6"  # blank line 5 skipped, numbering kept


def test_non_object_row_and_unknown_file_type(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "seeds.jsonl", ["[1, 2]"])
    (row,) = read_rows(path, CoEvolSeed)
    assert "must be a JSON object" in (row.error or "")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(InputError, match="unsupported file type"):
        list(read_rows(tmp_path / "x.csv"))
    with pytest.raises(InputError, match="does not exist"):
        list(read_rows(tmp_path / "missing.jsonl"))


def test_parquet_rows_and_counts(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "seeds.parquet"
    pq.write_table(pa.Table.from_pylist([{"instruction": f"q{i}"} for i in range(5)]), path)
    rows = list(read_rows(path, CoEvolSeed))
    assert [r.data["instruction"] for r in rows] == [f"q{i}" for i in range(5)]
    assert rows[2].source == f"{path}:row 3"
    assert count_rows(path) == 5
