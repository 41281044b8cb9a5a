"""The runner end to end: bad input rows, duplicates, resume after a kill, lock and fingerprint."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from synth.errors import RunFolderError
from synth.session import RunRequest, run_session
from synth.store import RunStore
from tests.coevol_script import coevol_responder


def write_seeds(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def request_for(server: Any, seeds: Path, out: Path, **changes: Any) -> RunRequest:
    return RunRequest(
        graph="coevol",
        input=seeds,
        out=out,
        options={"max_rounds": 1},
        models={"default": f"openai:scripted@{server.base_url}"},
        concurrency=4,
        **changes,
    )


def test_bad_rows_are_failed_records_with_file_line_and_duplicates_are_kept(
    tmp_path: Path, openai_server: Any
) -> None:
    openai_server.script(coevol_responder)
    seeds = write_seeds(
        tmp_path / "seeds.jsonl",
        [
            json.dumps({"instruction": "ACCEPT a", "output": "x"}),
            '{"instruction": ',
            json.dumps({"output": "no instruction"}),
            json.dumps({"instruction": 42}),
            json.dumps({"instruction": "ACCEPT twin", "output": "x"}),
            json.dumps({"instruction": "ACCEPT twin", "output": "x"}),
        ],
    )
    summary, folder = asyncio.run(run_session(request_for(openai_server, seeds, tmp_path / "run")))
    assert summary.counts == Counter({"ok": 3, "failed": 3})
    store = RunStore(folder)
    failed = {r.source: r.error for r in store.iter_records(status="failed")}
    ok = [r for r in store.iter_records(status="ok")]
    store.close()
    assert set(failed) == {f"{seeds}:2", f"{seeds}:3", f"{seeds}:4"}
    assert "not valid JSON" in failed[f"{seeds}:2"]
    assert "field 'instruction': missing" in failed[f"{seeds}:3"]
    assert "field 'instruction': Input should be a valid string" in failed[f"{seeds}:4"]
    twins = [r for r in ok if r.seed["instruction"] == "ACCEPT twin"]
    assert len(twins) == 2 and twins[0].id != twins[1].id


def test_rerun_skips_finished_rows_and_changed_config_is_refused(tmp_path: Path, openai_server: Any) -> None:
    openai_server.script(coevol_responder)
    seeds = write_seeds(
        tmp_path / "seeds.jsonl",
        [json.dumps({"instruction": f"ACCEPT {i}", "output": "x"}) for i in range(5)],
    )
    out = tmp_path / "run"
    first, _ = asyncio.run(run_session(request_for(openai_server, seeds, out)))
    calls = openai_server.stats()["completions"]
    again, _ = asyncio.run(run_session(request_for(openai_server, seeds, out)))
    assert (first.written, again.written, again.skipped) == (5, 0, 5)
    assert openai_server.stats()["completions"] == calls
    changed = request_for(openai_server, seeds, out)
    changed.options = {"max_rounds": 2}
    with pytest.raises(RunFolderError, match="another configuration"):
        asyncio.run(run_session(changed))
    changed.new = True
    _, folder = asyncio.run(run_session(changed))
    assert folder.name == "run-2"
    changed.new, changed.force = False, True
    forced, _ = asyncio.run(run_session(changed))
    assert forced.written == 5


def test_killed_run_resumes_with_every_row_exactly_once(tmp_path: Path, openai_server: Any) -> None:
    openai_server.script(coevol_responder)
    openai_server.set_latency(0.05)
    rows = 24
    seeds = write_seeds(
        tmp_path / "seeds.jsonl",
        [json.dumps({"instruction": f"ACCEPT {i}", "output": "x"}) for i in range(rows)],
    )
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "synth",
        "run",
        "coevol",
        "--input",
        str(seeds),
        "--out",
        str(out),
        "--model",
        f"openai:scripted@{openai_server.base_url}",
        "--option",
        "max_rounds=2",
        "--concurrency",
        "3",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and _stored(out) < 4:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = _stored(out)
    assert 4 <= killed_at < rows, "the kill must land mid-run"
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    store = RunStore(out)
    records = list(store.iter_records())
    store.close()
    assert len(records) == rows == len({r.id for r in records})
    assert sorted(r.seed["instruction"] for r in records) == sorted(f"ACCEPT {i}" for i in range(rows))
    bad = [
        (
            r.status,
            r.result.get("accepted_rounds"),
            [(rd["round"], rd["accepted"]) for rd in r.result["rounds"]],
            " ".join(s.role[:4] for s in r.steps),
        )
        for r in records
        if r.status != "ok" or r.result["accepted_rounds"] != 2
    ]
    assert not bad


def _stored(folder: Path) -> int:
    if not (folder / "records.sqlite").exists():
        return 0
    try:
        store = RunStore(folder)
        try:
            return sum(store.counts().values())
        finally:
            store.close()
    except Exception:
        return 0
