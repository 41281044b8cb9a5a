"""Sections every run gets, whatever its graph: overview, filters, errors and examples."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from synth.engine.logs import error_kind
from synth.report.model import BoundedCounter, ChartMaker, RunContext, SectionView, Table, ratio
from synth.trajectory import Trajectory, Usage

STATUSES = ("ok", "filtered", "failed")
#: Error messages and examples shown verbatim (escaped); more would make the page a data dump.
FIRST_ERRORS = 5
EXAMPLES = 3
TEXT_CHARS = 400


def clip(text: Any, limit: int = TEXT_CHARS) -> str:
    text = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class OverviewSection:
    """Rows by status, tokens and calls, and what the run was (graph, models, options, input)."""

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.statuses: Counter[str] = Counter()
        self.usage = Usage()

    def add(self, record: Trajectory) -> None:
        self.statuses[record.status] += 1
        self.usage = self.usage + record.usage

    def view(self, charts: ChartMaker) -> SectionView:
        config, rows = self.context.config, sum(self.statuses.values())
        labels = [s for s in STATUSES if self.statuses[s]] + sorted(set(self.statuses) - set(STATUSES))
        facts: list[tuple[str, Any]] = [
            ("graph", f"{config.get('graph', '?')} (version {config.get('graph_version', '?')})"),
            ("rows", rows),
            *((f"rows {s}", ratio(self.statuses[s], rows)) for s in labels),
            ("models", ", ".join(f"{k}={v}" for k, v in (config.get("models") or {}).items())),
            ("options", json.dumps(config.get("options") or {}, default=str)),
            ("input", str(config.get("input", ""))),
            ("tokens", f"{self.usage.prompt_tokens} prompt + {self.usage.completion_tokens} completion"),
            ("model calls", f"{self.usage.calls} ({self.usage.cached_calls} from the call cache)"),
        ]
        facts += _last_run_facts(self.context.run_ends)
        chart = charts.bar(
            "status", "Rows by status", labels, [self.statuses[s] for s in labels], xlabel="rows"
        )
        return SectionView(
            title="Overview",
            anchor="overview",
            intro=f"Run folder {self.context.folder}.",
            facts=facts,
            charts=[chart] if chart else [],
        )


def _last_run_facts(run_ends: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    if not run_ends:
        return []
    last = run_ends[-1]
    rate = last.get("rows_per_s")
    text = f"{last.get('ts', '?')}: {last.get('counts')} in {float(last.get('elapsed_s') or 0):.1f}s"
    return [("last run", text + (f" ({rate:g} rows/s)" if rate else "")), ("runs logged", len(run_ends))]


class FiltersSection:
    """Why rows were filtered: by filter kind (the reason's prefix) and by full reason."""

    def __init__(self, context: RunContext) -> None:
        self.kinds: BoundedCounter = BoundedCounter()
        self.reasons: BoundedCounter = BoundedCounter()

    def add(self, record: Trajectory) -> None:
        if record.status == "filtered":
            reason = record.filter_reason or "(no reason recorded)"
            self.kinds.add(reason.split(":", 1)[0].strip())
            self.reasons.add(reason)

    def view(self, charts: ChartMaker) -> SectionView | None:
        if not self.kinds:
            return None
        kinds = self.kinds.most_common()
        chart = charts.bar(
            "filters", "Filtered rows by filter", [k for k, _ in kinds], [n for _, n in kinds], xlabel="rows"
        )
        table = Table(
            "Most common reasons", ["reason", "rows"], [[r, n] for r, n in self.reasons.most_common(20)]
        )
        return SectionView(
            title="Filters",
            anchor="filters",
            intro="Rows a filter marked `filtered` (kept in the run, skipped by exports); "
            "see `synth filter`.",
            charts=[chart] if chart else [],
            tables=[table],
        )


class ErrorsSection:
    """Failed rows by kind, failed steps by role and reason, and retried backend errors from the log."""

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.row_kinds: BoundedCounter = BoundedCounter()
        self.step_failures: BoundedCounter = BoundedCounter()
        self.first: list[list[str]] = []

    def add(self, record: Trajectory) -> None:
        for step in record.steps:
            if not step.ok:
                self.step_failures.add(f"{step.role}: {step.error_reason or 'unknown'}")
        if record.status != "failed":
            return
        self.row_kinds.add(error_kind(record.error, record.source))
        if len(self.first) < FIRST_ERRORS:
            self.first.append([record.source or record.id, clip(record.error or "")])

    def view(self, charts: ChartMaker) -> SectionView | None:
        attempts = self._failed_attempts()
        if not (self.row_kinds or self.step_failures or attempts):
            return None
        section = SectionView(
            title="Errors",
            anchor="errors",
            intro="A failed row keeps its error; a failed step may still end in an ok row "
            "(e.g. a judge that did not parse in one order). Retried backend errors come from log.jsonl.",
        )
        kinds = self.row_kinds.most_common()
        chart = charts.bar(
            "errors", "Failed rows by error kind", [k for k, _ in kinds], [n for _, n in kinds]
        )
        section.charts = [chart] if chart else []
        for caption, counter, header in (
            ("Failed rows by error kind", self.row_kinds, "error kind"),
            ("Failed steps by role and reason", self.step_failures, "role: reason"),
            ("Failed backend attempts (retried or not), all runs", attempts, "model: error type"),
        ):
            if counter:
                section.tables.append(
                    Table(caption, [header, "count"], [[k, n] for k, n in counter.most_common()])
                )
        if self.first:
            section.tables.append(Table("First failed rows", ["row", "error"], self.first))
        return section

    def _failed_attempts(self) -> Counter[str]:
        attempts: Counter[str] = Counter()
        for event in self.context.run_ends:
            for spec, client in (event.get("clients") or {}).items():
                for kind, count in (client.get("errors") or {}).items():
                    attempts[f"{spec}: {kind}"] += int(count)
        return attempts


class ExamplesSection:
    """The first few ok rows: their seed and the text fields of their result (escaped: untrusted)."""

    def __init__(self, context: RunContext) -> None:
        self.rows: list[list[str]] = []

    def add(self, record: Trajectory) -> None:
        if record.status != "ok" or len(self.rows) >= EXAMPLES:
            return
        fields = {
            k: v for k, v in record.result.items() if isinstance(v, str | int | float | bool) and v != ""
        }
        result = "\n".join(f"{k}: {clip(v, 300)}" for k, v in fields.items())
        self.rows.append([record.id, clip(record.seed), result or clip(record.result)])

    def view(self, charts: ChartMaker) -> SectionView | None:
        if not self.rows:
            return None
        return SectionView(
            title="Examples",
            anchor="examples",
            intro=f"The first {len(self.rows)} ok rows (text cut at {TEXT_CHARS} characters).",
            tables=[Table("", ["id", "seed", "result"], self.rows)],
        )
