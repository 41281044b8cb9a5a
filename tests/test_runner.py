"""The runner end to end: bad input rows, duplicates, resume after a kill, lock, fingerprint, --retry-failed,
secrets, status. Kills inside rows and the call cache: test_resume.py, test_cache.py; faults: test_chaos.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from synth.engine.session import RunRequest, run_session
from synth.engine.store import RunStore
from synth.errors import RunFolderError
from synth.testing.graphs import echo_responder
from synth.testing.replies import Reply, last_user_text
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


# -- engine tests on the tiny graphs (synth.testing.graphs) --------------------------------------------
def echo_seeds(path: Path, texts: list[str]) -> Path:
    return write_seeds(path, [json.dumps({"text": t}) for t in texts])


def echo_request(server: Any, seeds: Path, out: Path, **changes: Any) -> RunRequest:
    return RunRequest(
        graph="synth.testing.graphs:ECHO",
        input=seeds,
        out=out,
        models={"default": f"openai:m@{server.base_url}"},
        concurrency=4,
        **changes,
    )


def test_a_second_run_on_a_folder_in_use_is_refused(tmp_path: Path, openai_server: Any) -> None:
    held = threading.Event()

    def hold_first(request: dict[str, Any]) -> Any:
        if not held.is_set():
            held.set()
            return Reply(content=echo_responder(request), latency_ms=30_000)
        return echo_responder(request)

    openai_server.script(hold_first)
    seeds = echo_seeds(tmp_path / "seeds.jsonl", ["a", "b"])
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "synth", "run", "synth.testing.graphs:ECHO", "-i", str(seeds), "-o", str(out),
        "-m", f"openai:m@{openai_server.base_url}", "-c", "1",
    ]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert held.wait(60), "the first run never called the model"
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    assert second.returncode == 2
    message = " ".join(second.stderr.split())
    assert f"run folder {out} is in use (pid {first.pid} since" in message
    assert "Wait for that run to finish" in message
    # The lock dies with its process: the folder is usable again, and the run resumes.
    openai_server.script(echo_responder)
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert _stored(out) == 2


def test_retry_failed_reruns_only_the_failed_rows(tmp_path: Path, openai_server: Any) -> None:
    def bad_request_for_flaky(request: dict[str, Any]) -> Any:
        if "FLAKY" in last_user_text(request):
            return Reply(status=400, error="the request was rejected")
        return echo_responder(request)

    openai_server.script(bad_request_for_flaky)
    texts = [f"row {i}" + (" FLAKY" if i % 3 == 0 else "") for i in range(9)]
    seeds = echo_seeds(tmp_path / "seeds.jsonl", texts)
    request = echo_request(openai_server, seeds, tmp_path / "run")
    first, folder = asyncio.run(run_session(request))
    assert first.counts == Counter({"ok": 6, "failed": 3})
    store = RunStore(folder)
    failed = {r.seed["text"]: r.error for r in store.iter_records(status="failed")}
    store.close()
    assert set(failed) == {t for t in texts if "FLAKY" in t}
    assert all(
        "BadRequestError" in (e or "") and "not retryable after 1 attempt(s)" in (e or "")
        for e in failed.values()
    )
    calls = openai_server.stats()["completions"]
    plain, _ = asyncio.run(run_session(request))  # failed rows count as done for a plain re-run
    assert (plain.written, plain.skipped, openai_server.stats()["completions"]) == (0, 9, calls)
    openai_server.script(echo_responder)
    openai_server.reset_counters()
    retried, _ = asyncio.run(run_session(request.model_copy(update={"retry_failed": True})))
    assert (retried.written, retried.skipped) == (3, 6) and retried.counts == Counter({"ok": 3})
    assert sorted(last_user_text(r) for r in openai_server.requests) == sorted(f"Text: {t}" for t in failed)
    store = RunStore(folder)
    assert store.counts() == {"ok": 9}
    store.close()


def test_no_api_key_lands_in_the_run_folder(
    tmp_path: Path, openai_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = "sk-synth-test-MARKER-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", marker)

    def echo_the_key(request: dict[str, Any]) -> Any:  # some servers quote the key they were sent
        if "LEAK" in last_user_text(request):
            return Reply(status=401, error=f"Incorrect API key provided: {marker}")
        if "SLOW" in last_user_text(request):
            return Reply(status=503, error=f"overloaded (key {marker})")
        return echo_responder(request)

    openai_server.script(echo_the_key)
    seeds = echo_seeds(tmp_path / "seeds.jsonl", ["a", "b LEAK", "c SLOW", "d"])
    request = echo_request(openai_server, seeds, tmp_path / "run", retries=1, backoff=0.0)
    summary, folder = asyncio.run(run_session(request))
    assert summary.counts == Counter({"ok": 2, "failed": 2})
    assert openai_server.stats()["completions"] == 5  # the key was sent (and echoed back)
    for path in folder.rglob("*"):
        if path.is_file():
            assert marker.encode() not in path.read_bytes(), f"the API key leaked into {path}"
    store = RunStore(folder)
    errors = [r.error or "" for r in store.iter_records(status="failed")]
    store.close()
    assert any("Incorrect API key provided: ***" in e for e in errors)


def test_status_reports_counts_errors_tokens_and_cost(tmp_path: Path, openai_server: Any) -> None:
    from typer.testing import CliRunner

    from synth.cli import app

    def fail_some(request: dict[str, Any]) -> Any:
        if "BAD" in last_user_text(request):
            return Reply(status=400, error="rejected")
        return echo_responder(request)

    openai_server.script(fail_some)
    seeds = echo_seeds(tmp_path / "seeds.jsonl", ["a", "b BAD", "c", "d BAD"])
    seeds.write_text(seeds.read_text() + "not json\n")
    summary, folder = asyncio.run(run_session(echo_request(openai_server, seeds, tmp_path / "run")))
    result = CliRunner().invoke(app, ["status", str(folder), "--price-in", "2", "--price-out", "10"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "failed │ 3" in text and "ok │ 2" in text and "total │ 5" in text
    prompt, completion = summary.usage.prompt_tokens, summary.usage.completion_tokens
    assert f"tokens: {prompt} prompt + {completion} completion in 2 calls" in text
    assert f"cost {(prompt * 2 + completion * 10) / 1e6:.4f}" in text
    assert "echo: backend (BadRequestError) │ 2" in text and "input │ 1" in text
    assert f"[openai:m@{openai_server.base_url}] not retryable after 1 attempt(s)" in text  # not markup
    assert "last run" in text and "rows/s" in text
    missing = CliRunner().invoke(app, ["status", str(tmp_path / "nothing")])
    assert missing.exit_code != 0 and not (tmp_path / "nothing").exists()


@pytest.mark.slow
def test_local_backends_get_a_long_timeout_and_remote_ones_keep_theirs(
    tmp_path: Path, openai_server: Any
) -> None:
    from synth.engine.session import LOCAL_TIMEOUT_S, build_models

    request = RunRequest(graph="coevol", input=tmp_path / "x.jsonl", out=tmp_path / "run", timeout=5.0)
    remote = f"openai:scripted@{openai_server.base_url}"
    models = build_models({"default": remote, "judge": "local:gemma-3-270m"}, request)
    assert models.for_role("judge").options.timeout_s == LOCAL_TIMEOUT_S
    assert models.for_role("editor").options.timeout_s == 5.0
    asyncio.run(models.default.close())


@pytest.mark.parametrize("cache", [True, False])
def test_a_rows_last_writes_are_committed_only_without_the_call_cache(
    tmp_path: Path, openai_server: Any, monkeypatch: pytest.MonkeyPatch, cache: bool
) -> None:
    """With every call cached, a killed row's last node re-runs for free, so the runner opens the checkpointer
    with ``keep_last_writes=False`` (synth/engine/checkpoints.py); ``--no-cache`` keeps every write."""
    from synth.engine.checkpoints import InlineSqliteSaver

    opened: list[bool] = []
    real_open = InlineSqliteSaver.open.__func__  # type: ignore[attr-defined]

    def spy(cls: type[InlineSqliteSaver], path: Any, **kwargs: Any) -> Any:
        opened.append(kwargs["keep_last_writes"])
        return real_open(cls, path, **kwargs)

    monkeypatch.setattr(InlineSqliteSaver, "open", classmethod(spy))
    seeds = echo_seeds(tmp_path / "seeds.jsonl", ["a", "b"])
    summary, _ = asyncio.run(run_session(echo_request(openai_server, seeds, tmp_path / "run", cache=cache)))
    assert summary.counts["ok"] == 2
    assert opened == [not cache]
