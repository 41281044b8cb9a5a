"""``synth filter``: re-apply a filter config to a run's stored trajectories.

Every ok or filtered record is first restored to ``ok`` (and its filter scores cleared), then checked by
each filter in order; the first failing filter's reason wins, and a row only reaches a filter if it passed
the ones before (so a dedup filter only remembers rows that are kept). Records are processed in chunks of
store order: within a chunk each filter runs over the surviving rows — the judge concurrently — which gives
the same result as checking row by row. No generator is called; only a judge filter calls a model, through
the run's call cache. The run folder is locked while filters are applied, and the applied config and its
counts are written to ``filters.json`` for the dataset card.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synth.engine.store import RunStore, open_locked
from synth.errors import SynthError
from synth.filters import rules
from synth.filters.config import FilterConfig, JudgeSpec
from synth.filters.judge import JudgeFilter
from synth.trajectory import Trajectory, Usage, utc_now

FILTERS_FILE = "filters.json"
Checker = Callable[[list[Trajectory]], Awaitable[list[str | None]]]


@dataclass(frozen=True)
class FilterOptions:
    """How judge filters call models; None means as the run did (its config.yaml), else as synth run does."""

    model: str | None = None
    concurrency: int | None = None
    max_calls: int | None = None
    timeout: float | None = None
    retries: int | None = None
    api_key_env: str | None = None
    cache: bool = True


@dataclass
class FilterReport:
    """Counts by status and by ``filtered:KIND``, and what the judge calls cost."""

    counts: Counter[str] = field(default_factory=Counter)
    usage: Usage = field(default_factory=Usage)

    def describe(self) -> str:
        counts = ", ".join(f"{key}: {value}" for key, value in sorted(self.counts.items())) or "no ok records"
        if not self.usage.calls:
            return counts
        u = self.usage
        return (
            f"{counts}; judge: {u.calls} calls ({u.cached_calls} from the call cache), "
            f"{u.prompt_tokens} prompt + {u.completion_tokens} completion tokens"
        )


async def apply_filters(
    run_dir: Path | str, config: FilterConfig, options: FilterOptions | None = None
) -> FilterReport:
    """Re-apply ``config`` to every ok or filtered record of ``run_dir``; see the module doc."""
    folder = Path(run_dir)
    if not (folder / "records.sqlite").exists():
        raise SynthError(f"{folder} is not a run folder (no records.sqlite); run `synth run` first.")
    options = options or FilterOptions()
    report = FilterReport()
    with contextlib.ExitStack() as stack:
        store = open_locked(folder, stack)
        judges, closers = await _judges(folder, config, options, stack)
        try:
            checkers = [
                judges[i].reasons if i in judges else _rule(spec) for i, spec in enumerate(config.filters)
            ]
            chunk = max(256, 4 * max((j.concurrency for j in judges.values()), default=0))
            batch: list[Trajectory] = []
            for trajectory in store.iter_records():
                if trajectory.status in ("ok", "filtered"):
                    batch.append(trajectory)
                if len(batch) >= chunk:
                    await _check(batch, checkers, store, report.counts)
                    batch = []
            await _check(batch, checkers, store, report.counts)
        finally:
            for close in closers:
                await close()
        for judge in judges.values():
            report.usage = report.usage + judge.usage
        _write_summary(folder, config, report)
    return report


async def _check(
    batch: list[Trajectory], checkers: list[Checker], store: RunStore, counts: Counter[str]
) -> None:
    for trajectory in batch:
        trajectory.status, trajectory.filter_reason = "ok", None
        trajectory.scores.pop("filters", None)
    alive = batch
    for checker in checkers:
        if not alive:
            break
        reasons = await checker(alive)
        for trajectory, reason in zip(alive, reasons, strict=True):
            if reason:
                trajectory.status, trajectory.filter_reason = "filtered", reason
                counts[f"filtered:{reason.split(':')[0]}"] += 1
        alive = [t for t in alive if t.status == "ok"]
    counts["ok"] += len(alive)
    counts["filtered"] += len(batch) - len(alive)
    store.update(batch)


def _rule(spec: Any) -> Checker:
    """A model-free check as a batch checker (stateful dedup checkers keep their memory across chunks)."""
    check: Callable[[Trajectory], str | None]
    if spec.kind == "dedup":
        check = rules.ExactDedup(spec)
    elif spec.kind == "near_dup":
        check = rules.NearDedup(spec)
    else:
        function = {
            "length": rules.check_length,
            "regex": rules.check_regex,
            "required": rules.check_required,
            "refusal": rules.check_refusal,
            "language": rules.check_language,
            "exact_match": rules.check_gold,
            "f1": rules.check_gold,
        }[spec.kind]

        def check(trajectory: Trajectory) -> str | None:
            return function(spec, trajectory)  # type: ignore[operator]

    async def reasons(batch: list[Trajectory]) -> list[str | None]:
        return [check(t) for t in batch]

    return reasons


async def _judges(
    folder: Path, config: FilterConfig, options: FilterOptions, stack: contextlib.ExitStack
) -> tuple[dict[int, JudgeFilter], list[Callable[[], Awaitable[None]]]]:
    """One :class:`JudgeFilter` per judge spec (by index), on clients built as ``synth run`` builds them."""
    specs = {i: spec for i, spec in enumerate(config.filters) if isinstance(spec, JudgeSpec)}
    if not specs:
        return {}, []
    from synth.engine.cache import CallCache
    from synth.engine.session import CACHE_FILE, build_models

    run_config = _run_config(folder)
    request = _request(folder, run_config, options)
    cache = CallCache(folder / CACHE_FILE) if options.cache else None
    if cache is not None:
        stack.callback(cache.close)
    run_models: Mapping[str, str] = run_config.get("models") or {}
    judges: dict[int, JudgeFilter] = {}
    closers: list[Callable[[], Awaitable[None]]] = []
    clients: dict[str, Any] = {}
    for index, spec in specs.items():
        model = spec.model or options.model or run_models.get("judge") or run_models.get("default")
        if not model:
            raise SynthError(
                f"filter {index} (judge) has no model: set `model:` in the filter, pass --model SPEC, "
                "or apply it to a run folder whose config.yaml names a model"
            )
        if model not in clients:
            client = build_models({"default": model}, request, cache).default
            clients[model] = client
            closers.append(client.close)
        judges[index] = JudgeFilter(spec, clients[model], request.concurrency)
    return judges, closers


def _run_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.yaml"
    if not path.exists():
        return {}
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def _request(folder: Path, run_config: Mapping[str, Any], options: FilterOptions) -> Any:
    """The run's client settings (concurrency, calls in flight, timeout, retries, key name) + overrides."""
    from synth.engine.session import RunRequest

    known = {k: v for k, v in run_config.items() if k in RunRequest.model_fields}
    base = RunRequest.model_validate({"graph": "-", "input": "-", "out": str(folder), **known})
    overrides = {
        "concurrency": options.concurrency,
        "timeout": options.timeout,
        "retries": options.retries,
        "api_key_env": options.api_key_env,
    }
    request = base.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    max_calls = options.max_calls or (2 * request.concurrency if options.concurrency else base.max_calls)
    return request.model_copy(update={"max_calls": max_calls})


def _write_summary(folder: Path, config: FilterConfig, report: FilterReport) -> None:
    summary = {
        "applied_at": utc_now(),
        "filters": [spec.model_dump(mode="json", exclude_defaults=True) for spec in config.filters],
        "counts": dict(report.counts),
    }
    (folder / FILTERS_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")


def read_summary(run_dir: Path | str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(filters last applied, filtered records by reason kind) of a run folder, read-only."""
    import sqlite3

    folder = Path(run_dir)
    path = folder / FILTERS_FILE
    applied = json.loads(path.read_text()).get("filters", []) if path.exists() else []
    reasons: Counter[str] = Counter()
    db_path = folder / "records.sqlite"
    if db_path.exists():
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT json_extract(record, '$.filter_reason') FROM records WHERE status = 'filtered'"
            )
            for (reason,) in rows:
                reasons[str(reason or "unknown").split(":")[0]] += 1
        finally:
            db.close()
    return applied, dict(reasons)
