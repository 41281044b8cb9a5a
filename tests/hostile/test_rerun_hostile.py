"""Re-running a folder: the input it was made from is recorded and guarded, and a source line is one
record however often it is fixed and re-run."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from synth.dataset.export import export_run
from synth.engine.session import resolve_graph, run_session
from synth.engine.status import read_status
from synth.engine.store import RunStore
from synth.errors import RunFolderError
from tests.hostile.support import request, seeds


def _config(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "config.yaml").read_text())  # type: ignore[no-any-return]


def _sources(folder: Path) -> list[tuple[str, str]]:
    store = RunStore(folder)
    try:
        return sorted((t.source.rsplit(":", 1)[1], t.status) for t in store.iter_records())
    finally:
        store.close()


async def test_the_run_config_records_each_input_with_its_hash(tmp_path: Path, openai_server: Any) -> None:
    path = seeds(tmp_path / "a.jsonl", ["x", "y"])
    _, folder = await run_session(request(tmp_path, openai_server, path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert _config(folder)["inputs"] == [{"path": str(path), "sha256": digest}]


async def test_a_different_input_into_an_existing_run_is_refused(tmp_path: Path, openai_server: Any) -> None:
    first = seeds(tmp_path / "a.jsonl", ["x", "y"])
    await run_session(request(tmp_path, openai_server, first))
    other = seeds(tmp_path / "b.jsonl", ["z"])
    with pytest.raises(RunFolderError) as caught:
        await run_session(request(tmp_path, openai_server, other))
    message = str(caught.value)
    assert f"was made from {first}" in message and f"--input {other}" in message
    assert "--add-input" in message and "--new" in message and "--force" in message
    assert read_status(tmp_path / "run").counts == {"ok": 2}  # nothing merged

    _, folder = await run_session(request(tmp_path, openai_server, other, new=True))
    assert folder.name == "run-2" and read_status(folder).counts == {"ok": 1}

    summary, folder = await run_session(request(tmp_path, openai_server, other, add_input=True))
    assert folder.name == "run" and read_status(folder).counts == {"ok": 3}
    assert [i["path"] for i in _config(folder)["inputs"]] == [str(first), str(other)]
    export_run(folder, resolve_graph(str(tmp_path / "echo.yaml")), "sft", tmp_path / "sft")
    card = (tmp_path / "sft" / "README.md").read_text()
    assert str(first) in card and str(other) in card  # the card names every seed file

    summary, folder = await run_session(request(tmp_path, openai_server, other))  # both recorded: resumes
    assert summary.skipped == 1

    _, folder = await run_session(request(tmp_path, openai_server, first, force=False, add_input=False))
    third = seeds(tmp_path / "c.jsonl", ["w"])
    _, folder = await run_session(request(tmp_path, openai_server, third, force=True))
    assert read_status(folder).counts == {"ok": 1}  # --force: a fresh run of the new input
    assert [i["path"] for i in _config(folder)["inputs"]] == [str(third)]


async def test_the_same_input_moved_or_edited_is_still_the_same_run(
    tmp_path: Path, openai_server: Any
) -> None:
    path = seeds(tmp_path / "a.jsonl", ["x", "y"])
    await run_session(request(tmp_path, openai_server, path))
    moved = tmp_path / "moved.jsonl"
    moved.write_bytes(path.read_bytes())
    summary, _ = await run_session(request(tmp_path, openai_server, moved))  # same content: same input
    assert summary.skipped == 2
    seeds(path, ["x", "y", "z"])  # edited in place: a resume that picks up the new line
    summary, folder = await run_session(request(tmp_path, openai_server, path))
    assert summary.skipped == 2 and dict(summary.counts) == {"ok": 1}
    assert _config(folder)["inputs"][0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("retry_failed", [False, True], ids=["plain-rerun", "retry-failed"])
async def test_a_fixed_line_replaces_its_failed_record(
    tmp_path: Path, openai_server: Any, retry_failed: bool
) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"question": "one"}\n{"question": broken\n{"question": "three"}\n')
    summary, folder = await run_session(request(tmp_path, openai_server, path))
    assert dict(summary.counts) == {"ok": 2, "failed": 1}
    path.write_text('{"question": "one"}\n{"question": "two, fixed"}\n{"question": "three"}\n')
    summary, folder = await run_session(request(tmp_path, openai_server, path, retry_failed=retry_failed))
    assert dict(summary.counts) == {"ok": 1}
    assert _sources(folder) == [("1", "ok"), ("2", "ok"), ("3", "ok")]
    assert read_status(folder).counts == {"ok": 3}  # the source line is counted once
    summary, _ = await run_session(request(tmp_path, openai_server, path))
    assert summary.written == 0 and summary.skipped == 3


async def test_a_line_edited_again_still_has_one_record(tmp_path: Path, openai_server: Any) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"question": "one"}\n{"question": 2}\n')  # a seed-model error: not a string
    await run_session(request(tmp_path, openai_server, path))
    path.write_text('{"question": "one"}\n{"question": 2\n')  # now not even JSON
    await run_session(request(tmp_path, openai_server, path))
    assert _sources(tmp_path / "run") == [("1", "ok"), ("2", "failed")]
    path.write_text('{"question": "one"}\n{"question": "two"}\n')
    await run_session(request(tmp_path, openai_server, path, retry_failed=True))
    assert _sources(tmp_path / "run") == [("1", "ok"), ("2", "ok")]


async def test_an_edited_line_replaces_its_record_and_a_moved_line_keeps_its_own(
    tmp_path: Path, openai_server: Any
) -> None:
    path = seeds(tmp_path / "s.jsonl", ["one", "two"])
    await run_session(request(tmp_path, openai_server, path))
    seeds(path, ["zero", "one", "two, edited"])  # a line inserted on top, the old last line edited
    summary, folder = await run_session(request(tmp_path, openai_server, path))
    assert dict(summary.counts) == {"ok": 2} and summary.skipped == 1
    store = RunStore(folder)
    questions = sorted(t.seed["question"] for t in store.iter_records())
    store.close()
    assert questions == ["one", "two, edited", "zero"]  # "one" moved and kept; "two" was replaced


async def test_with_limit_only_failed_records_are_replaced(tmp_path: Path, openai_server: Any) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"question": "one"}\n{"question": broken\n')
    await run_session(request(tmp_path, openai_server, path))
    path.write_text('{"question": "one, edited"}\n{"question": "two"}\n')
    await run_session(request(tmp_path, openai_server, path, limit=2))
    assert read_status(tmp_path / "run").counts == {"ok": 3}  # "one" may sit past a --limit: kept
