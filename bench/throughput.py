"""Throughput of the batch engine against the loopback OpenAI server, beside a naive client.

Run ``python bench/throughput.py`` (a few minutes on 2 cores). For each configuration the same server
process answers two clients in turn, in the same run:

* the **engine**: ``synth run`` (in process, :func:`synth.session.run_session`) of the one-role graph
  ``synth.testing.graphs:ECHO`` over N rows, with ``max_calls = C`` (the backend's limit, as for the naive
  client) and ``concurrency = 2 C`` rows in flight: a row spends part of its time outside its model
  call (graph steps, checkpoints), and the extra rows keep the C call slots busy. Run folder, records,
  checkpoints and call cache as in production (``--no-checkpoints`` / ``--no-cache`` variants are listed);
* the **naive** client: ``asyncio`` + ``openai.AsyncOpenAI``, a semaphore of C, the same request per row
  (same messages and JSON-schema ``response_format``), the reply parsed with the same pydantic model.

Reported (medians of ``--repeat`` rounds, each round running every client back to back): rows/s, its
fraction of the limit ``C / mean latency``, the ratio engine / naive (taken within a round), CPU ms/row. With
stragglers (5 % of calls 10x slower) the ratio to naive is what matters: both wait on the same tail.
At zero latency the ratio is the engine's per-call overhead against a bare client (CPU bound).
``--profile`` runs the zero-latency engine case under pyinstrument and writes ``bench/results/profile.txt``;
``bench/layers.py`` gives the same split as CPU per layer, measured without HTTP.
Timings are noisy on a shared machine: compare ratios within one run. Results: bench/results/throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import openai  # noqa: E402

from synth.models.openai_client import schema_response_format  # noqa: E402
from synth.session import RunRequest, run_session  # noqa: E402
from synth.testing.graphs import ECHO_ROLE, Answer  # noqa: E402
from synth.testing.process import ServerProcess  # noqa: E402

RESULTS = REPO / "bench" / "results"
#: Rows in flight per call slot for the engine (see the module doc).
ROW_FACTOR = 2.0
GRAPH = "synth.testing.graphs:ECHO"
RESPONDER = "synth.testing.graphs:echo_responder"


def write_seeds(path: Path, rows: int) -> Path:
    with path.open("w") as handle:
        for i in range(rows):
            handle.write(json.dumps({"text": f"row {i}: the quick brown fox jumps over the lazy dog"}) + "\n")
    return path


async def naive(base_url: str, rows: int, concurrency: int) -> dict[str, Any]:
    """The baseline: what a hand-written asyncio script would do for the same requests."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=600)
    response_format = schema_response_format(Answer)
    slots = asyncio.Semaphore(concurrency)
    ok = 0

    async def one(i: int) -> None:
        nonlocal ok
        system, user = ECHO_ROLE.render(text=f"row {i}: the quick brown fox jumps over the lazy dog")
        async with slots:
            reply = await client.chat.completions.create(
                model="m",
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                response_format=response_format,  # type: ignore[arg-type]
            )
        Answer.model_validate_json(reply.choices[0].message.content or "")
        ok += 1

    started = time.perf_counter()
    cpu = time.process_time()
    # Rows are started as slots free up (as the engine does), not all at once: a gather over 2,000
    # pending tasks would measure the event loop's queue, not the client.
    pending: set[asyncio.Task[None]] = set()
    for i in range(rows):
        if len(pending) >= concurrency:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        pending.add(asyncio.create_task(one(i)))
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - started
    await client.close()
    return {"rows": ok, "elapsed_s": elapsed, "cpu_s": time.process_time() - cpu, "rows_per_s": ok / elapsed}


async def engine(
    base_url: str, seeds: Path, rows: int, concurrency: int, *, checkpoints: bool = True, cache: bool = True
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        request = RunRequest(
            graph=GRAPH,
            input=seeds,
            out=Path(tmp) / "run",
            models={"default": f"openai:m@{base_url}"},
            concurrency=math.ceil(ROW_FACTOR * concurrency),
            max_calls=concurrency,
            limit=rows,
            checkpoints=checkpoints,
            cache=cache,
        )
        cpu = time.process_time()
        summary, _ = await run_session(request)
        cpu = time.process_time() - cpu
    if summary.counts.get("ok", 0) != rows:
        raise RuntimeError(f"engine run incomplete: {dict(summary.counts)}")
    return {
        "rows": rows,
        "elapsed_s": summary.elapsed_s,
        "cpu_s": cpu,
        "rows_per_s": rows / summary.elapsed_s,
    }


def bench_case(
    name: str,
    server: ServerProcess,
    seeds: Path,
    rows: int,
    concurrency: int,
    latency: dict[str, Any],
    variants: list[dict[str, bool]],
    repeat: int,
) -> dict[str, Any]:
    """``repeat`` rounds of naive then each engine variant, back to back; medians over the rounds.

    On a shared machine the available CPU drifts from minute to minute: the ratio to naive is taken
    within each round (clients measured seconds apart), and its median reported."""
    server.configure(latency=latency)
    mean_s = (
        latency["mean_ms"]
        / 1000
        * (1 + latency.get("straggler_rate", 0.0) * (latency.get("straggler_factor", 10.0) - 1))
    )
    limit = concurrency / mean_s if mean_s else None
    rounds: dict[str, list[dict[str, Any]]] = {}
    for _ in range(repeat):
        server.reset_counters()
        base = asyncio.run(naive(server.base_url, rows, concurrency))
        rounds.setdefault("naive", []).append(base)
        for variant in variants:
            label = "engine" + "".join(f"_no_{k}" for k, v in variant.items() if not v)
            server.reset_counters()
            got = asyncio.run(engine(server.base_url, seeds, rows, concurrency, **variant))
            got["max_in_flight_at_server"] = server.stats()["max_in_flight"]
            got["ratio_to_naive"] = got["rows_per_s"] / base["rows_per_s"]
            rounds.setdefault(label, []).append(got)
    case: dict[str, Any] = {"case": name, "concurrency": concurrency, "latency": latency, "repeat": repeat}
    case["limit_rows_per_s"] = limit
    for label, runs in rounds.items():
        summary: dict[str, Any] = {
            "rows": rows,
            "rows_per_s": statistics.median(r["rows_per_s"] for r in runs),
            "cpu_ms_per_row": statistics.median(1000 * r["cpu_s"] / r["rows"] for r in runs),
            "rounds_rows_per_s": [round(r["rows_per_s"], 1) for r in runs],
        }
        if label != "naive":
            summary["ratio_to_naive"] = statistics.median(r["ratio_to_naive"] for r in runs)
            summary["rounds_ratio_to_naive"] = [round(r["ratio_to_naive"], 3) for r in runs]
            summary["max_in_flight_at_server"] = max(r["max_in_flight_at_server"] for r in runs)
        if limit:
            summary["fraction_of_limit"] = summary["rows_per_s"] / limit
        case[label] = summary
    return case


def profile_zero_latency(server: ServerProcess, seeds: Path, rows: int, concurrency: int) -> str:
    from pyinstrument import Profiler

    server.configure(latency={"mean_ms": 0.0, "jitter_ms": 0.0, "straggler_rate": 0.0})
    profiler = Profiler(async_mode="disabled", interval=0.001)
    profiler.start()
    asyncio.run(engine(server.base_url, seeds, rows, concurrency))
    profiler.stop()
    tree = profiler.output_text(unicode=False, color=False, show_all=False)
    flat = profiler.output_text(unicode=False, color=False, flat=True)
    by_package = self_time_by_package(profiler)
    total = sum(by_package.values()) or 1.0
    summary = "\n".join(f"{100 * t / total:5.1f} %  {name}" for name, t in by_package.items())
    text = (
        f"==== self time by package ({rows} rows, zero latency) ====\n{summary}\n\n"
        + tree
        + "\n\n==== flat (self time) ====\n"
        + "\n".join(flat.splitlines()[:80])
    )
    text = text.replace(f"{REPO}/", "")  # a committed result names no developer machine's folders
    (RESULTS / "profile.txt").write_text(text)
    return text


def self_time_by_package(profiler: Any) -> dict[str, float]:
    """Sampled self time grouped by where the code lives: which layer the CPU goes to."""
    groups = {
        "site-packages/openai/": "openai SDK",
        "site-packages/httpx": "httpx/httpcore/anyio (HTTP)",
        "site-packages/httpcore": "httpx/httpcore/anyio (HTTP)",
        "site-packages/anyio": "httpx/httpcore/anyio (HTTP)",
        "site-packages/h11": "httpx/httpcore/anyio (HTTP)",
        "site-packages/autogen_ext": "autogen-ext OpenAI client",
        "site-packages/autogen_agentchat": "autogen agent (AssistantAgent)",
        "site-packages/autogen_core": "autogen core",
        "site-packages/langgraph/checkpoint": "langgraph checkpointer (serde, sqlite)",
        "site-packages/langgraph": "langgraph (pregel)",
        "site-packages/langchain_core": "langchain-core (langgraph config/callbacks)",
        "site-packages/pydantic": "pydantic",
        "site-packages/rich": "rich (progress)",
        "synth/": "synth",
        "asyncio/": "asyncio event loop",
        "<built-in>": "builtins (socket, sqlite, json...)",
    }
    totals: dict[str, float] = {}
    stack = [profiler.last_session.root_frame()]
    while stack:
        frame = stack.pop()
        stack.extend(frame.children)
        if frame.is_synthetic:  # "[self]" leaves: their time is in the parent's total_self_time
            continue
        path = frame.file_path or "<built-in>"
        group = next((g for key, g in groups.items() if key in path), "other (stdlib...)")
        totals[group] = totals.get(group, 0.0) + frame.total_self_time
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--zero-rows", type=int, default=1000, help="rows for the zero-latency cases")
    parser.add_argument("--only", nargs="*", help="case names to run (default: all)")
    parser.add_argument("--profile", action="store_true", help="also profile the zero-latency engine")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per case (medians are reported)")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    every = [{"checkpoints": True, "cache": True}]
    knobs = [*every, {"checkpoints": False, "cache": True}, {"checkpoints": False, "cache": False}]
    cases: list[tuple[str, int, dict[str, Any], list[dict[str, bool]], int]] = [
        ("C32_200ms", 32, {"mean_ms": 200.0, "jitter_ms": 50.0}, knobs, args.rows),
        ("C64_200ms", 64, {"mean_ms": 200.0, "jitter_ms": 50.0}, every, args.rows),
        (
            "C32_200ms_stragglers",
            32,
            {"mean_ms": 200.0, "jitter_ms": 50.0, "straggler_rate": 0.05, "straggler_factor": 10.0},
            every,
            args.rows,
        ),
        ("C32_zero_latency", 32, {"mean_ms": 0.0, "jitter_ms": 0.0}, knobs, args.zero_rows),
    ]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(responder=RESPONDER) as server:
        # Warm-up: the first run imports the OpenAI client stack (~1 s of CPU) — not a per-row cost.
        warm = write_seeds(Path(tmp) / "warm.jsonl", 20)
        asyncio.run(engine(server.base_url, warm, 20, 4))
        asyncio.run(naive(server.base_url, 20, 4))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        seeds = write_seeds(Path(tmp) / "seeds.jsonl", max(args.rows, args.zero_rows))
        with ServerProcess(responder=RESPONDER) as server:
            for name, concurrency, latency, variants, rows in cases:
                if args.only and name not in args.only:
                    continue
                latency = {"straggler_rate": 0.0, "straggler_factor": 10.0, **latency}
                case = bench_case(name, server, seeds, rows, concurrency, latency, variants, args.repeat)
                results.append(case)
                print_case(case)
            if args.profile:
                print(profile_zero_latency(server, seeds, args.zero_rows, 32)[:6000])
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "cases": results,
    }
    out = RESULTS / ("throughput.json" if not args.only else "throughput-partial.json")
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


def print_case(case: dict[str, Any]) -> None:
    limit = case["limit_rows_per_s"]
    title = f"\n{case['case']}  (C={case['concurrency']}"
    print(title + (f", limit {limit:.0f} rows/s)" if limit else ", CPU bound)"))
    print(f"  {'client':<28}{'rows/s':>9}{'of limit':>10}{'vs naive':>10}{'cpu ms/row':>12}")
    for label, got in case.items():
        if not isinstance(got, dict) or "rows_per_s" not in got:
            continue
        frac = f"{got['fraction_of_limit']:.2f}" if "fraction_of_limit" in got else "-"
        ratio = f"{got.get('ratio_to_naive', 1.0):.2f}"
        print(f"  {label:<28}{got['rows_per_s']:>9.1f}{frac:>10}{ratio:>10}{got['cpu_ms_per_row']:>12.2f}")


if __name__ == "__main__":
    main()
