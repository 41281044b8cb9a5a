"""One seed row through a built-in graph on the embedded model, as ``synth run`` runs it: what the
integration tests of the graphs share (the seed file, the run, the one stored record)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from synth.engine.runner import RunSummary
from synth.engine.session import RunRequest, run_session
from synth.engine.store import RunStore
from synth.trajectory import Trajectory


def run_one_row(
    tmp_path: Path, graph: str, row: dict[str, Any], options: dict[str, Any], **request: Any
) -> tuple[RunSummary, Trajectory]:
    """Run ``row`` through ``graph`` on ``local:gemma-3-270m``, one row at a time with a 600 s call timeout
    (``request`` adds or overrides :class:`RunRequest` fields); the run's summary and its one record."""
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps(row) + "\n")
    settings: dict[str, Any] = {"models": {"default": "local:gemma-3-270m"}, "concurrency": 1, "timeout": 600}
    run = RunRequest(
        graph=graph, input=seeds, out=tmp_path / "run", options=options, **{**settings, **request}
    )
    summary, folder = asyncio.run(run_session(run))
    store = RunStore(folder)
    try:
        [record] = list(store.iter_records())
    finally:
        store.close()
    return summary, record
