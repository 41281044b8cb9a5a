"""``synth export --out``: only a new, empty or earlier export folder is ever replaced; a live run is said."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.dataset.export import ExportOptions, export_run
from synth.engine.session import resolve_graph, run_session
from synth.engine.store import open_locked
from synth.errors import RunFolderError
from tests.hostile.support import request, seeds


@pytest.fixture
async def run(tmp_path: Path, openai_server: Any) -> Path:
    req = request(tmp_path, openai_server, seeds(tmp_path / "s.jsonl", ["a", "b"]))
    _, folder = await run_session(req)
    return folder


def _export(run: Path, out: Path, **options: Any) -> Any:
    return export_run(run, resolve_graph(str(run.parent / "echo.yaml")), "sft", out, ExportOptions(**options))


def test_a_folder_of_notes_is_refused_and_left_untouched(run: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("my notes")
    for overwrite in (False, True):
        with pytest.raises(
            RunFolderError, match=r"notes exists and is not a synth export folder.*new or empty"
        ):
            _export(run, notes, overwrite=overwrite)
    assert (notes / "todo.txt").read_text() == "my notes"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".notes")] == []  # no scratch left


def test_the_run_folder_and_its_parents_are_refused(run: Path, tmp_path: Path) -> None:
    for out in (run, tmp_path, run / "records.sqlite"):
        with pytest.raises(RunFolderError):
            _export(run, out, overwrite=True)
    assert (run / "records.sqlite").is_file() and (run / "config.yaml").is_file()


def test_an_earlier_export_is_replaced_only_with_overwrite(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "sft"
    assert _export(run, out).rows == 2
    with pytest.raises(RunFolderError, match="holds an earlier synth export; pass --overwrite"):
        _export(run, out)
    assert _export(run, out, overwrite=True).rows == 2
    (out / "data" / "mine.csv").write_text("x")  # someone else's file inside: no longer ours to delete
    with pytest.raises(RunFolderError, match="not a synth export folder"):
        _export(run, out, overwrite=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _export(run, empty).rows == 2  # an empty folder is fine


def test_cli_refuses_with_exit_2_and_names_the_folder(run: Path, tmp_path: Path) -> None:
    notes = tmp_path / "proj"
    notes.mkdir()
    (notes / "main.py").write_text("print(1)")
    outcome = CliRunner().invoke(app, ["export", str(run), "-f", "sft", "-o", str(notes)])
    assert isinstance(outcome.exception, RunFolderError) and "proj" in str(outcome.exception)
    assert (notes / "main.py").exists()


def test_export_during_a_live_run_says_it_is_a_partial_snapshot(run: Path, tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        open_locked(run, stack)  # what `synth run` holds while it writes
        result = _export(run, tmp_path / "live")
    assert result.live_run and "partial snapshot" in result.describe()
    assert "Partial snapshot" in (tmp_path / "live" / "README.md").read_text()
    quiet = _export(run, tmp_path / "after")
    assert quiet.live_run is None and "partial" not in (tmp_path / "after" / "README.md").read_text().lower()
