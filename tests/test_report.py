"""``synth report``: runs made over HTTP (loopback server, scripted CoEvol and SMART roles), the report's
numbers, its escaping of untrusted text, and the page rendered in real headless Chromium."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from synth.cli import app
from synth.engine.session import RunRequest, run_session
from synth.engine.store import RunStore
from synth.errors import RunFolderError
from synth.report import (
    BoundedCounter,
    Distribution,
    SectionView,
    register_section,
    unregister_section,
    write_report,
)
from synth.trajectory import Step, Trajectory, Usage
from tests.atm_script import AtmScript
from tests.coevol_script import coevol_responder
from tests.smart_script import smart_responder

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian chromium is not installed (`make sysdeps` installs it; CI has it)"
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Untrusted model output: were it not escaped, the script would log a console error and the <img> would
#: fail to load — both of which the browser check catches.
INJECTION = "<script>console.error('injected')</script><img src=missing.png onerror=\"console.error('x')\">"


def render_in_chromium(index: Path) -> dict[str, Any]:
    """Open ``index`` in headless Chromium; return console errors, failed requests and per-<img> sizes."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, offline=True
        )
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto(index.as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img",
                "els => els.map(e => ({src: e.src, complete: e.complete, w: e.naturalWidth}))",
            )
            scripts = page.eval_on_selector_all("script", "els => els.length")
            text = page.inner_text("body")
        finally:
            browser.close()
    return {"problems": problems, "images": images, "scripts": scripts, "text": text}


def assert_renders(index: Path) -> dict[str, Any]:
    page = render_in_chromium(index)
    assert page["problems"] == []
    assert page["images"], "the report has no chart"
    assert all(i["complete"] and i["w"] > 0 for i in page["images"]), page["images"]
    assert page["scripts"] == 0  # the page needs no JavaScript, and no row may smuggle any in
    return page


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def run_graph(
    tmp_path: Path, server: Any, graph: str, rows: list[Any], concurrency: int = 4, **options: Any
) -> Path:
    request = RunRequest(
        graph=graph,
        input=write_jsonl(tmp_path / f"{graph}-seeds.jsonl", rows),
        out=tmp_path / graph,
        options=options,
        models={"default": f"openai:scripted@{server.base_url}"},
        concurrency=concurrency,
        backoff=0.01,
    )
    asyncio.run(run_session(request))
    return request.out


def facts(html: str, section: str) -> dict[str, str]:
    """The <dt>/<dd> pairs of one section of the page (HTML entities left as they are)."""
    body = html.split(f'<section id="{section}">', 1)[1].split("</section>", 1)[0]
    return dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", body))


def filter_row(folder: Path, instruction: str, reason: str) -> None:
    store = RunStore(folder)
    try:
        record = next(r for r in store.iter_records() if r.seed.get("instruction") == instruction)
        record.status, record.filter_reason = "filtered", reason
        store.update([record])
    finally:
        store.close()


@needs_chromium
def test_coevol_report_counts_rounds_and_errors_escapes_outputs_and_renders(
    tmp_path: Path, openai_server: Any
) -> None:
    openai_server.script(coevol_responder)
    openai_server.set_latency(0.005)
    openai_server.set_faults(fail_first=2)  # two retried 500s land in the log's client errors
    folder = run_graph(
        tmp_path,
        openai_server,
        "coevol",
        [
            {"instruction": "ACCEPT this", "output": INJECTION},
            {"instruction": "TIE this", "output": "v0"},
            {"instruction": "BADJUDGE this", "output": "v0"},
            {"instruction": "WORSE this", "output": "v0"},
            {"instruction": "ACCEPT that", "output": "v1"},
            '{"instruction": broken json',
        ],
        concurrency=1,  # rows stored in input order: the injected row is among the examples
        max_rounds=2,
    )
    filter_row(folder, "ACCEPT that", "length: result.evolved has 11 chars < 20")

    result = write_report(folder)

    report = folder / "report"
    assert result.index == report / "index.html" and result.rows == 6
    html = result.index.read_text()
    assert "&lt;script&gt;console.error(" in html and "<script" not in html  # escaped, never live
    overview = facts(html, "overview")
    assert overview["rows ok"] == "66.7% (4 / 6)" and overview["rows failed"] == "16.7% (1 / 6)"
    coevol = facts(html, "coevol")
    assert coevol["rows with a result"] == "5"
    assert coevol["rows with at least one accepted round"] == "40.0% (2 / 5)"
    # rounds judged: 2 for each ACCEPT row, 1 each for TIE, BADJUDGE, WORSE; BADJUDGE's judge never parsed
    assert coevol["rounds judged"] == "7" and coevol["judge failed in both orders"] == "14.3% (1 / 7)"
    assert "revision not better (ties reject)" in html and "max_rounds (2) reached" in html
    assert "judge: validation" in html  # BADJUDGE's failed judge steps, in an ok row
    assert "input" in html and "broken json" not in html.split('id="examples"')[1]
    # the two retried 500s, from log.jsonl's per-client summary
    assert re.search(
        r"<td>openai:scripted@http://127\.0\.0\.1:\d+/v1: InternalServerError</td><td>2</td>", html
    )
    assert "length: result.evolved has 11 chars &lt; 20" in html
    roles = html.split('<section id="roles">', 1)[1]
    for role in ("positive_debater", "critical_debater", "advisor", "editor", "judge"):
        assert f"<td>{role}</td>" in roles
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert {"status.png", "coevol-rounds.png", "roles-tokens.png", "roles-latency.png", "filters.png"} <= set(
        pngs
    )
    assert len(pngs) == result.charts
    assert all((report / p).read_bytes().startswith(b"\x89PNG") for p in pngs)

    page = assert_renders(result.index)
    assert INJECTION.split("<img")[0] in page["text"]  # shown as text
    assert len(page["images"]) == len(pngs)


@needs_chromium
def test_smart_report_has_retrieval_hit_rates_and_renders(
    tmp_path: Path, openai_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNTH_CACHE", str(tmp_path / "cache"))
    corpus = write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"id": "fr", "title": "France", "text": "Paris is the capital of France. It lies on the Seine."},
            {"id": "de", "title": "Germany", "text": "Berlin is the capital of Germany. It has museums."},
            {"id": "it", "title": "Italy", "text": "Rome is the capital of Italy. It has seven hills."},
        ],
    )
    openai_server.script(smart_responder)
    folder = run_graph(
        tmp_path,
        openai_server,
        "smart",
        [
            {"question": "what is the capital of france", "answers": ["Paris"]},
            {"question": "what is the capital of atlantis", "answers": ["Poseidonia"]},
            {"question": "BADIR what is the capital of italy", "answers": ["Rome"]},
        ],
        corpus=str(corpus),
        top_k=2,
    )

    result = write_report(folder, tmp_path / "elsewhere" / "report")

    html = result.index.read_text()
    smart = facts(html, "smart")
    assert smart["rows with a result"] == "2" and smart["top_k"] == "2"
    assert smart["rows whose passages hold a gold answer"] == "50.0% (1 / 2)"
    assert smart["rows with a relevant passage"] == "50.0% (1 / 2)"
    assert smart["model answer exact match (gold)"] == "50.0% (1 / 2)"
    hit_table = html.split("Hit rate by rank", 1)[1].split("</table>", 1)[0]
    assert "<td>1</td><td>0.500</td><td>0.500</td>" in hit_table
    assert "intent_reconstructor: validation" in html  # the BADIR row failed at its first role
    assert "<td>relevant_passages</td>" in html and "<td>exact_match</td>" in html
    assert not (folder / "report").exists()  # --out elsewhere leaves the run folder alone
    assert_renders(result.index)


@needs_chromium
def test_atm_report_compares_clean_and_attacked_exact_match_and_renders(
    tmp_path: Path, openai_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNTH_CACHE", str(tmp_path / "cache"))
    openai_server.script(AtmScript())
    france = "Paris is the capital of France. It lies on the Seine."
    request = RunRequest(
        graph="atm",
        input=write_jsonl(
            tmp_path / "atm-seeds.jsonl",
            [  # the scripted generator answers Lyon whenever a fabrication is in its context
                {
                    "question": "capital of france LPS: -1.0 -4.0 -2.0",
                    "answers": ["Paris"],
                    "passage": france,
                },
                {"question": "city of the light festival", "answers": ["Lyon"], "passage": "Lyon hosts it."},
                {"question": "BADATTACK capital of spain", "answers": ["Madrid"], "passage": "Madrid is it."},
            ],
        ),
        out=tmp_path / "atm",
        options={"n_fabrications": 3},
        models={"default": f"openai:scripted@{openai_server.base_url}?logprobs=vllm"},
        concurrency=4,
    )
    asyncio.run(run_session(request))

    result = write_report(request.out)

    html = result.index.read_text()
    atm = facts(html, "atm")
    assert atm["exact match, clean"] == "100.0% (2 / 2)"
    assert atm["exact match, attacked"] == "50.0% (1 / 2)"
    assert atm["right when clean, wrong when attacked"] == "50.0% (1 / 2)"
    assert atm["fabrications per row (mean)"] == "3.00"
    assert atm["rows with an attacker preference pair"] == "100.0% (2 / 2)"
    assert facts(html, "overview")["rows failed"] == "33.3% (1 / 3)"  # BADATTACK: every sample failed
    assert (result.index.parent / "atm-exact-match.png").exists() and (
        result.index.parent / "atm-nll.png"
    ).exists()
    assert_renders(result.index)


def test_rerun_replaces_the_report_and_keeps_no_stale_charts(tmp_path: Path) -> None:
    folder = crafted_run(tmp_path, "atm", [atm_record(i, clean=True, attacked=i % 2 == 0) for i in range(4)])
    first = write_report(folder)
    (first.index.parent / "stale.png").write_bytes(b"old")
    second = write_report(folder)
    assert second.index == first.index and not (first.index.parent / "stale.png").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".report")]  # no temp folders left


def test_out_never_replaces_a_folder_that_is_not_a_report(tmp_path: Path) -> None:
    folder = crafted_run(tmp_path, "atm", [atm_record(0, clean=True, attacked=False)])
    with pytest.raises(RunFolderError, match="holds the run folder itself"):
        write_report(folder, folder)
    with pytest.raises(RunFolderError, match="holds the run folder itself"):
        write_report(folder, tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.parquet").write_bytes(b"rows")
    with pytest.raises(RunFolderError, match="is not a synth report"):
        write_report(folder, data)
    (data / "train.parquet").unlink()
    (data / "index.html").write_text("<html>someone else's page</html>")
    with pytest.raises(RunFolderError, match="is not a synth report"):
        write_report(folder, data)
    assert (folder / "records.sqlite").exists() and (data / "index.html").exists()
    (data / "index.html").unlink()
    assert write_report(folder, data).index == data / "index.html"  # an empty folder is fine


def crafted_run(tmp_path: Path, graph: str, records: list[Trajectory]) -> Path:
    """A run folder written through the real store, for graphs whose records are crafted by hand."""
    folder = tmp_path / graph
    store = RunStore(folder)
    store.write_config({"graph": graph, "graph_version": "1", "options": {}}, "fp")
    store.write(records)
    store.close()
    return folder


def atm_record(number: int, *, clean: Any, attacked: Any, **result: Any) -> Trajectory:
    return Trajectory(
        id=f"row-{number}",
        graph="atm",
        seed={"question": f"q{number}"},
        result={"exact_match_clean": clean, "exact_match_attacked": attacked, **result},
        steps=[Step(role="generator", usage=Usage(prompt_tokens=10, completion_tokens=2), latency_s=0.1)],
    )


def test_atm_section_reads_its_fields_defensively(tmp_path: Path) -> None:
    fabrications = [{"sample": 0, "nll": 2.5}, {"sample": 1, "nll": 0.5}, {"sample": 2}, "junk"]
    records = [
        atm_record(0, clean=True, attacked=False, fabrications=fabrications),
        atm_record(1, clean=True, attacked=True, fabrications="not a list"),
        atm_record(2, clean=False, attacked=False),
        atm_record(3, clean=None, attacked=None),  # no flags: skipped, not counted as wrong
        atm_record(4, clean="yes", attacked={"odd": 1}),  # malformed: skipped
    ]
    html = write_report(crafted_run(tmp_path, "atm", records)).index.read_text()
    atm = facts(html, "atm")
    assert atm["exact match, clean"] == "66.7% (2 / 3)"
    assert atm["exact match, attacked"] == "33.3% (1 / 3)"
    assert atm["right when clean, wrong when attacked"] == "33.3% (1 / 3)"
    assert atm["fabrications per row (mean)"] == "4.00"


def test_a_graph_registers_its_own_section(tmp_path: Path) -> None:
    class Lengths:
        def __init__(self, context: Any) -> None:
            self.lengths = Distribution()

        def add(self, record: Trajectory) -> None:
            self.lengths.add(len(record.seed["question"]))

        def view(self, charts: Any) -> SectionView:
            chart = charts.hist("my-lengths", "Question length", self.lengths.values())
            return SectionView(
                title="My graph", facts=[("longest question", self.lengths.high)], charts=[chart]
            )

    register_section("mine", Lengths)
    try:
        records = [
            atm_record(i, clean=True, attacked=True).model_copy(update={"graph": "mine"}) for i in range(3)
        ]
        result = write_report(crafted_run(tmp_path, "mine", records))
    finally:
        unregister_section("mine")
    html = result.index.read_text()
    assert facts(html, "my-graph") == {"longest question": "2.0"}
    assert (result.index.parent / "my-lengths.png").exists() and 'href="#my-graph"' in html


def test_a_folder_that_is_not_a_run_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="does not exist"):
        write_report(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()  # never created by looking at it
    (tmp_path / "plain").mkdir()
    with pytest.raises(RunFolderError, match=r"plain is not a run folder \(no config.yaml\)"):
        write_report(tmp_path / "plain")
    assert list((tmp_path / "plain").iterdir()) == []
    (tmp_path / "plain" / "config.yaml").write_text("graph: coevol\n")
    with pytest.raises(RunFolderError, match=r"no records\.sqlite"):
        write_report(tmp_path / "plain")
    outcome = CliRunner().invoke(app, ["report", str(tmp_path / "plain")])
    assert outcome.exit_code != 0 and isinstance(outcome.exception, RunFolderError)


def test_cli_writes_the_report_and_prints_its_path(tmp_path: Path) -> None:
    folder = crafted_run(tmp_path, "atm", [atm_record(0, clean=True, attacked=False)])
    outcome = CliRunner().invoke(app, ["report", str(folder)])
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stdout.strip().endswith("index.html") and (folder / "report" / "index.html").exists()


def test_distribution_is_exact_under_its_cap_and_bounded_over_it() -> None:
    exact = Distribution(cap=1000)
    for value in range(1, 101):
        exact.add(value)
    assert (exact.count, exact.total, exact.low, exact.high) == (100, 5050.0, 1.0, 100.0)
    assert exact.percentile(50) == 50.5 and exact.percentile(90) == pytest.approx(90.1)
    sampled = Distribution(cap=500)
    for value in range(100_000):
        sampled.add(value)
    assert len(sampled.values()) == 500 and sampled.count == 100_000 and sampled.high == 99_999
    assert sampled.percentile(50) == pytest.approx(50_000, rel=0.1)  # a uniform sample of the stream


def test_counters_stop_adding_distinct_keys_at_their_cap() -> None:
    counter = BoundedCounter(cap=3)
    for key in ["a", "b", "a", "c", "d", "e", "a"]:
        counter.add(key)
    assert counter == {"a": 3, "b": 1, "c": 1, "(other)": 2}


GRAPH_WITH_SECTION = """
from synth.graph import SynthGraph, result_from, seed_fields
from synth.report import Distribution, SectionView


class Lengths:
    def __init__(self, context):
        self.lengths = Distribution()

    def add(self, record):
        self.lengths.add(len(record.seed["question"]))

    def view(self, charts):
        return SectionView(title="Declared", facts=[("longest question", self.lengths.high)])


GRAPH = SynthGraph(name="declared", description="", seed_model=seed_fields("question"), roles=(),
                   build=lambda models: None, to_trajectory=result_from("x"), report_section=Lengths)
"""


def test_a_graph_declares_its_own_section(tmp_path: Path) -> None:
    graph_file = tmp_path / "declared.py"
    graph_file.write_text(GRAPH_WITH_SECTION)
    records = [atm_record(i, clean=True, attacked=True) for i in range(3)]
    folder = tmp_path / "run"
    store = RunStore(folder)
    store.write_config({"graph": f"{graph_file}:GRAPH", "graph_version": "1", "options": {}}, "fp")
    store.write(records)
    store.close()
    html = write_report(folder).index.read_text()
    assert facts(html, "declared") == {"longest question": "2.0"}
    assert 'id="atm"' not in html  # the section comes from the run's graph, not from a name list
