"""`synth run --sampling`: generation settings per run and per role, over HTTP to the loopback server."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from synth.cli import app
from synth.dataset.export import ExportOptions, export_run
from synth.engine.session import RunRequest, resolve_graph, run_session
from synth.engine.session import check_roles as check_model_roles
from synth.engine.store import RunStore
from synth.errors import SynthError, unknown_roles
from synth.sampling import DEFAULT_MAX_TOKENS, SamplingError, check_roles, parse
from synth.testing.replies import Reply, system_text
from tests.coevol_script import coevol_responder


def test_parse_scopes_values_and_errors() -> None:
    assert parse(["max_tokens=256", "judge.temperature=0", 'stop=[".", "\\n"]', "seed=7"]) == {
        "default": {"max_tokens": 256, "stop": [".", "\n"], "seed": 7},
        "judge": {"temperature": 0.0},
    }
    with pytest.raises(
        SamplingError, match=r"every role: max_tokn: Extra inputs are not permitted \(keys: max_tokens"
    ):
        parse(["max_tokn=3"])
    with pytest.raises(SamplingError, match=r"role 'judge': top_p: Input should be less than or equal to 1"):
        parse(["judge.top_p=3"])
    with pytest.raises(SamplingError, match=r"use KEY=VALUE or ROLE.KEY=VALUE"):
        parse(["temperature"])


def _coevol(tmp_path: Path, server: Any, name: str, sampling: dict[str, Any]) -> Path:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"instruction": "ACCEPT this", "output": "v0"}) + "\n")
    server.script(coevol_responder)
    request = RunRequest(
        graph="coevol",
        input=seeds,
        out=tmp_path / name,
        options={"max_rounds": 1},
        sampling=sampling,
        models={"default": f"openai:scripted@{server.base_url}"},
        concurrency=1,
    )
    import asyncio

    summary, folder = asyncio.run(run_session(request))
    assert dict(summary.counts) == {"ok": 1}
    return folder


def test_run_and_role_settings_win_and_are_recorded(tmp_path: Path, openai_server: Any) -> None:
    plain = _coevol(tmp_path, openai_server, "plain", {})
    sent = openai_server.requests
    assert sent and all(r["max_tokens"] == DEFAULT_MAX_TOKENS for r in sent), "the OpenAI default applies"
    judges = [r for r in sent if "impartial judge" in system_text(r)]
    assert judges and all(r["temperature"] == 0.0 for r in judges), "the judge role's own default"

    before = len(sent)
    tuned = _coevol(
        tmp_path, openai_server, "tuned", {"default": {"max_tokens": 64}, "judge": {"temperature": 0.5}}
    )
    sent = openai_server.requests[before:]
    assert sent and all(r["max_tokens"] == 64 for r in sent)
    assert {r["temperature"] for r in sent if "impartial judge" in system_text(r)} == {0.5}
    assert all(r.get("temperature") != 0.5 for r in sent if "impartial judge" not in system_text(r))

    config = yaml.safe_load((tuned / "config.yaml").read_text())
    assert config["sampling"] == {"default": {"max_tokens": 64}, "judge": {"temperature": 0.5}}
    assert (tuned / "fingerprint").read_text() != (plain / "fingerprint").read_text()
    [record] = RunStore(tuned).iter_records()
    assert record.provenance is not None and record.provenance.sampling["judge"] == {
        "temperature": 0.5,
        "max_tokens": 64,
    }
    card = export_run(tuned, resolve_graph("coevol"), "sft", tmp_path / "sft").path / "README.md"
    assert '"temperature": 0.5' in card.read_text()


def test_unknown_role_fails_before_the_run_folder(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"instruction": "x"}) + "\n")
    result = CliRunner().invoke(
        app,
        ["run", "coevol", "-i", str(seeds), "-o", str(tmp_path / "run"), "-m", "openai:m@http://127.0.0.1:9/v1",
         "--sampling", "jduge.temperature=0"],
    )  # fmt: skip
    assert isinstance(result.exception, SamplingError)  # `synth` prints it as "error: ..." and exits 2
    assert "names role(s) jduge that graph 'coevol' does not have; its roles: advisor," in str(
        result.exception
    )
    assert not (tmp_path / "run").exists()


FREE_TEXT = """
name: notes
seed: [topic]
roles:
  writer:
    instructions: You write notes.
    prompt: "Notes on {{ topic }}."
nodes:
  write: writer
edges:
  - {from: START, to: write}
  - {from: write, to: END}
"""


async def test_free_text_cut_by_max_tokens_is_marked_and_left_out_of_exports(
    tmp_path: Path, openai_server: Any
) -> None:
    spec = tmp_path / "notes.yaml"
    spec.write_text(FREE_TEXT)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"topic": t}) + "\n" for t in ("short", "long")))

    def responder(request: dict[str, Any]) -> Reply:
        cut = "long" in request["messages"][-1]["content"]
        return Reply(content="words " * 8, finish_reason="length" if cut else "stop")

    openai_server.script(responder)
    request = RunRequest(
        graph=str(spec),
        input=seeds,
        out=tmp_path / "run",
        sampling={"default": {"max_tokens": 8}},
        models={"default": f"openai:scripted@{openai_server.base_url}"},
    )
    summary, folder = await run_session(request)
    assert dict(summary.counts) == {"ok": 2}
    steps = {r.seed["topic"]: r.steps[0] for r in RunStore(folder).iter_records()}
    assert steps["long"].finish_reason == "length" and steps["short"].finish_reason == "stop"
    assert steps["long"].meta["truncated"] is True and "truncated" not in steps["short"].meta
    assert all(r["max_tokens"] == 8 for r in openai_server.requests)

    graph = resolve_graph(str(spec))
    result = export_run(folder, graph, "sft", tmp_path / "sft")
    assert result.rows == 1 and result.truncated == 1
    card = (tmp_path / "sft" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert "# notes · sft" in card.splitlines() and "synth-notes" in front["tags"]
    assert not any("/" in tag for tag in front["tags"]) and "/" not in front["pretty_name"]
    assert "1 trajectories left out: a free-text reply was cut by max_tokens" in result.describe()
    kept = export_run(folder, graph, "sft", tmp_path / "all", ExportOptions(include_truncated=True))
    assert kept.rows == 2 and kept.truncated == 0
    assert len(pq.read_table(next((tmp_path / "all").rglob("*.parquet"))).to_pylist()) == 2


def test_card_title_and_tag_use_the_graph_name_never_a_path() -> None:
    from synth.dataset.card import graph_name

    assert graph_name({"graph": "/srv/graphs/notes.yaml", "graph_name": "notes"}) == "notes"
    assert graph_name({"graph": "/srv/graphs/notes.yaml"}) == "notes"  # a run from before graph_name
    assert graph_name({"graph": "pkg/file.py:REFLEXION"}) == "REFLEXION"
    assert graph_name({"graph": "coevol"}) == "coevol"


async def test_a_reply_is_cut_before_a_stop_string_the_server_returned(
    tmp_path: Path, openai_server: Any
) -> None:
    """OpenAI's API drops the stop string; `transformers serve` returns it and the rest of its token."""
    spec = tmp_path / "notes.yaml"
    spec.write_text(FREE_TEXT)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"topic": "the sea"}) + "\n" + json.dumps({"topic": "the sky"}) + "\n")

    def responder(request: dict[str, Any]) -> Reply:
        if "sea" in request["messages"][-1]["content"]:
            return Reply(content="Waves and salt.\n\n### Administrator")
        return Reply(content="Blue, mostly.")

    openai_server.script(responder)
    request = RunRequest(
        graph=str(spec),
        input=seeds,
        out=tmp_path / "run",
        sampling={"default": {"stop": ["\n### ", "<end>"]}},
        models={"default": f"openai:scripted@{openai_server.base_url}"},
    )
    summary, folder = await run_session(request)
    assert dict(summary.counts) == {"ok": 2}
    raw = {r.seed["topic"]: r.steps[0].raw for r in RunStore(folder).iter_records()}
    assert raw == {"the sea": "Waves and salt.", "the sky": "Blue, mostly."}
    assert all(r["stop"] == ["\n### ", "<end>"] for r in openai_server.requests)


def test_unknown_roles_are_named_with_a_did_you_mean_for_model_and_sampling() -> None:
    roles = ["responder", "judge", "editor"]
    assert unknown_roles(["default", "judge", "jduge", "zzz"], roles) == {
        "jduge": "'jduge' (did you mean 'judge'?)",
        "zzz": "'zzz'",
    }
    with pytest.raises(SamplingError) as sampling_error:
        check_roles({"default": {}, "zzz": {}, "jduge": {}}, "g", roles)
    assert str(sampling_error.value) == (
        "--sampling names role(s) jduge, zzz that graph 'g' does not have; its roles: editor, judge, "
        "responder. Unknown: 'jduge' (did you mean 'judge'?), 'zzz'"
    )
    graph = SimpleNamespace(name="g", roles=[SimpleNamespace(name=name) for name in roles])
    with pytest.raises(SynthError) as model_error:
        check_model_roles(graph, {"default": "m", "jduge": "m", "editr": "m"})  # type: ignore[arg-type]
    assert str(model_error.value).startswith(
        "--model jduge=..., editr=...: graph 'g' has no role 'jduge' (did you mean 'judge'?), 'editr' "
        "(did you mean 'editor'?); its roles: responder, judge, editor."
    )
    check_model_roles(graph, {"default": "m", "judge": "m"})  # type: ignore[arg-type]
