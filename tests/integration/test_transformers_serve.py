"""A real OpenAI-compatible server: `transformers serve` on the embedded model folder, on loopback.

The folder lacks a chat template; `synth models serve-folder` gives the server the project's own. The
server ignores `response_format`, so the preflight detects `prompt` mode and every structured step records
it. `--sampling max_tokens=...` keeps each call short (the server's default is 1024 new tokens).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from synth.cli.console import EXIT_NO_ROW_OK
from synth.engine.store import RunStore
from synth.models.local import model_path
from synth.serving import serve_folder

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
STARTUP_S = 240.0
STOP = 'stop=["\\n### "]'  # the section boundary of the project's chat template (synth.serving)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(model spec, log path) of a `transformers serve` process on the embedded model, stopped after."""
    cli = Path(sys.executable).parent / "transformers"
    if not cli.exists():
        pytest.fail("`transformers serve` is missing: install the serve extra (pip install -e '.[serve]')")
    root = tmp_path_factory.mktemp("serve")
    folder = serve_folder(model_path("gemma-3-270m"), root / "gemma")
    (root / "hub").mkdir()  # GET /v1/models answers 500 without a hub cache folder
    env = {**os.environ, "HF_HUB_CACHE": str(root / "hub"), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    port = _free_port()
    log = root / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(cli), "serve", str(folder), "--device", "cpu", "--host", "127.0.0.1", "--port", str(port)],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + STARTUP_S
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not start:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        yield f"openai:{folder}@{url}", str(log)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def synth(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`synth ...` as a batch job runs it: output redirected, no terminal."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SYNTH_CHECK": "1"}  # the preflight, as users get it
    command = [sys.executable, "-m", "synth", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_coevol_on_transformers_serve_detects_prompt_mode(served: tuple[str, str], tmp_path: Path) -> None:
    spec, log = served
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"instruction": "Name one primary colour."}) + "\n")
    done = synth(
        "run", "coevol", "-i", str(seeds), "-o", str(tmp_path / "run"), "-m", spec,
        "--option", "max_rounds=1", "--sampling", "max_tokens=24", "--sampling", STOP, "--timeout", "300",
        "--retries", "1",
        "--concurrency", "1", cwd=tmp_path,
    )  # fmt: skip
    # 0: the row ran; EXIT_NO_ROW_OK: it ran and failed (a 270M base model rarely writes the JSON asked for)
    assert done.returncode in (0, EXIT_NO_ROW_OK), done.stderr[-3000:]
    assert "prompt structured output" in done.stderr, done.stderr[-3000:]  # the preflight's line
    [record] = RunStore(tmp_path / "run").iter_records()
    responder = record.steps[0]
    assert responder.role == "responder" and responder.meta.get("structured") == "prompt"
    assert responder.usage.completion_tokens <= 24 * max(1, responder.usage.calls)
    if not responder.ok:  # a 270M base model rarely writes the JSON asked for: a failed row, not a lost one
        assert responder.error_reason in ("validation", "length") and responder.raw
    # What the preflight detected (the server logs it once; the loopback tests check the run sends none).
    assert "Ignoring unsupported fields in the request: {'response_format'}" in Path(log).read_text()


FREE_TEXT = """
name: notes
seed: [topic]
roles:
  writer:
    instructions: You write short notes.
    prompt: "Notes on {{ topic }}."
nodes:
  write: writer
edges:
  - {from: START, to: write}
  - {from: write, to: END}
"""


def test_a_yaml_graph_on_transformers_serve_exports(served: tuple[str, str], tmp_path: Path) -> None:
    spec, _ = served
    graph = tmp_path / "notes.yaml"
    graph.write_text(FREE_TEXT)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"topic": t}) + "\n" for t in ("the sea", "the sky")))
    done = synth(
        "run", str(graph), "-i", str(seeds), "-o", str(tmp_path / "run"), "-m", spec,
        "--sampling", "max_tokens=12", "--sampling", STOP, "--timeout", "300", "--retries", "1", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    records = list(RunStore(tmp_path / "run").iter_records())
    assert [r.status for r in records] == ["ok", "ok"]
    steps = [r.steps[0] for r in records]
    assert all(
        s.raw and s.usage.completion_tokens <= 12 and s.finish_reason in ("stop", "length") for s in steps
    )
    # The folder's generation config ends a reply at the next section; synth cuts the returned stop string.
    assert not any("###" in s.raw for s in steps), [s.raw for s in steps]
    cut = sum(s.finish_reason == "length" for s in steps)
    exported = synth("export", "run", "--format", "sft", "--out", "sft", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    rows = pq.read_table(next((tmp_path / "sft" / "data").glob("*.parquet"))).num_rows
    assert rows == 2 - cut
    kept = synth("export", "run", "--format", "sft", "--out", "all", "--include-truncated", cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    assert pq.read_table(next((tmp_path / "all" / "data").glob("*.parquet"))).num_rows == 2
