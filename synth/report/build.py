"""``synth report runs/NAME``: stream a run's records once through the sections, draw, write the page.

The page is self-contained: one ``index.html`` with inline CSS, PNG charts next to it referenced by
relative paths, no JavaScript, nothing fetched from the network, every text escaped (a row's content is
untrusted: a model may well have written ``<script>``). It is built in a temporary folder beside the
target and swapped in at the end, so a report is never half written and never keeps stale charts.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml

from synth.dataset.outputs import OutputKind, check_output_folder
from synth.engine.logs import read_events
from synth.engine.store import RunStore
from synth.errors import RunFolderError
from synth.report.charts import ChartWriter
from synth.report.model import RunContext, SectionView
from synth.report.sections import sections_for
from synth.trajectory import utc_now

REPORT_DIR = "report"
LOG_FILE = "log.jsonl"
#: Written into every page: what marks a folder as a report that a new one may replace.
GENERATOR_MARK = '<meta name="generator" content="synth report">'
REPORT = OutputKind(
    "synth report",
    "index.html",
    (GENERATOR_MARK,),
    owns=lambda entry: entry.is_file() and (entry.name == "index.html" or entry.suffix == ".png"),
)


@dataclass
class ReportResult:
    index: Path
    rows: int
    charts: int
    seconds: float

    def describe(self) -> str:
        return f"{self.index}: {self.rows} rows, {self.charts} charts in {self.seconds:.1f}s"


def open_run(folder: Path) -> RunContext:
    """The run's config and log events; a folder that is not a run is an error that says what to pass."""
    if not folder.is_dir():
        raise RunFolderError(
            f"{folder} does not exist or is not a folder; pass a run folder such as runs/NAME."
        )
    config_path = folder / "config.yaml"
    if not config_path.exists():
        raise RunFolderError(
            f"{folder} is not a run folder (no config.yaml). Pass the folder that `synth run --out` wrote "
            "(it holds config.yaml and records.sqlite)."
        )
    if not (folder / "records.sqlite").exists():
        raise RunFolderError(
            f"{folder} has no records.sqlite: the run stored no row yet; run `synth run` first."
        )
    try:
        config = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RunFolderError(f"{config_path}: not valid YAML ({exc}); was it edited by hand?") from None
    if not isinstance(config, dict):
        raise RunFolderError(f"{config_path}: expected a mapping of settings, found {type(config).__name__}.")
    return RunContext(folder=folder, config=config, run_ends=list(read_events(folder / LOG_FILE, "run_end")))


def write_report(run_dir: Path | str, out: Path | str | None = None) -> ReportResult:
    """Write ``out`` (default ``RUN/report``): ``index.html`` plus one PNG per chart."""
    started = time.perf_counter()
    context = open_run(Path(run_dir))
    target = Path(out) if out is not None else context.folder / REPORT_DIR
    check_target(target, context.folder)
    sections = sections_for(context)
    rows = 0
    store = RunStore(context.folder)
    try:
        for record in store.iter_records():
            rows += 1
            for section in sections:
                section.add(record)
    except sqlite3.DatabaseError as exc:
        raise RunFolderError(f"{store.db_path}: cannot read the records ({exc}).") from None
    finally:
        store.close()
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with ChartWriter(building) as charts:
            views = [v for v in (s.view(charts) for s in sections) if v is not None]
        _name_anchors(views)
        (building / "index.html").write_text(render(context, views, rows), encoding="utf-8")
        _swap_in(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    count = sum(len(v.charts) for v in views)
    return ReportResult(target / "index.html", rows, count, time.perf_counter() - started)


def check_target(target: Path, run_folder: Path) -> None:
    """Refuse to replace anything but an earlier report: ``--out`` pointing at a run or a data folder
    must never delete it (the rule every output folder shares: :mod:`synth.dataset.outputs`)."""
    check_output_folder(REPORT, target, run_folder)


def _name_anchors(views: list[SectionView]) -> None:
    """Give every section a unique anchor for the page's navigation (hooks may leave it empty)."""
    seen: set[str] = set()
    for view in views:
        anchor = re.sub(r"[^a-z0-9]+", "-", (view.anchor or view.title).lower()).strip("-") or "section"
        while anchor in seen:
            anchor += "-x"
        seen.add(anchor)
        view.anchor = anchor


def _swap_in(building: Path, target: Path) -> None:
    """Replace ``target`` with ``building``; the old report is removed only once the new one is in place."""
    old = target.with_name(f".{target.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    building.rename(target)
    target.chmod(0o755)  # mkdtemp makes it private; a report is meant to be shared
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(old)


def render(context: RunContext, views: list[SectionView], rows: int) -> str:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("synth.report", "templates"),
        autoescape=True,  # every value, including table cells from model outputs, is escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = environment.get_template("index.html.j2")
    return template.render(
        title=f"synth report: {context.folder.name}",
        graph=context.graph,
        rows=rows,
        generated=utc_now(),
        sections=views,
        config=context.config_text(),
    )
