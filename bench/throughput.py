"""Throughput of the batch engine against the loopback OpenAI server, beside naive clients, in one run.

Run ``python bench/throughput.py`` (~12 minutes on 2 cores). The loopback server runs as a separate
process; for each case every client runs back to back against it, ``--repeat`` rounds:

* **synth**: ``synth run`` (in process, :func:`synth.engine.session.run_session`) of the one-role YAML graph
  ``bench/one_role.yaml`` (one free-text call per row) over N rows, with ``max_calls = C`` (the
  backend's limit, as the naive client's semaphore) and ``concurrency = 2 C`` rows in flight, run folder,
  records, checkpoints and call cache as in production; ``synth_wN`` is ``--workers N`` (both limits
  split between the workers; their CPU is counted too). ``--no-checkpoints`` / ``--no-cache`` variants
  are listed at zero latency;
* **naive**: ``asyncio`` + ``openai.AsyncOpenAI`` (its default httpx transport), ``Semaphore(C)``, the
  same number of free-text calls; **naive_aiohttp** is the same script with
  ``http_client=openai.DefaultAioHttpClient()`` (the transport synth uses); **naive_aiohttp_x2** (C = 128
  only) runs that script in two forked processes, each with half the calls and ``Semaphore(C / 2)``: what
  the bare SDK client reaches with both cores, the reference for ``--workers 2``.

Cases: C = 64 / 128 / 32 at 200 ± 50 ms; C = 64 with 5 % of calls 10x slower (stragglers); C = 64 at zero
latency (CPU bound: the per-call cost of each client); CoEvol (``graphs/coevol/graph.py``, one round: 8 calls
per row with the scripted judge of ``tests/coevol_script.py``, 800 rows) at C = 64, compared in calls/s.
Reported (medians over rounds): calls/s (= rows/s for the one-role graph), its fraction of the limit
``C / mean latency``, the ratio to the naive client (taken within a round), CPU ms per call (process
CPU, worker processes included, over the calls the server counted), the server's CPU ms per call (it
shares the machine's cores), and the CPU ceiling ``cores * 1000 / (client + server ms per call)``: the
calls/s this machine could give that client if both sides kept every core busy.
``memory_w2`` (not a throughput case): peak memory of ``synth run --workers 2`` at 1k and 100k rows of the
one-role graph against a zero-latency server, all processes together (sum of PSS, and the plain sum of
RSS as an upper bound; :func:`memory.measure`, ``--memory-sizes``); the target is growth <= 200 MB.
``--profile`` runs one synth case (one worker; ``--profile-concurrency``, ``--profile-latency-ms``, default
C = 64 at zero latency) under pyinstrument and writes ``bench/results/profile[-C<C>-<ms>ms].txt``;
``bench/layers.py`` gives CPU per layer, measured without HTTP.
Timings are noisy on a shared machine: compare ratios within one run (``--out`` names the results file, so
a run on a loaded machine does not replace an idle one's). Results: bench/results/throughput.json (all
cases) or throughput-partial.json (``--only``). The full set, and how to read it: bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import openai  # noqa: E402

from synth.engine.session import RunRequest, run_session  # noqa: E402
from synth.testing.process import ServerProcess  # noqa: E402

RESULTS = REPO / "bench" / "results"
#: Rows in flight per call slot for the engine (see the module doc).
ROW_FACTOR = 2.0
GRAPH = str(REPO / "bench" / "one_role.yaml")
RESPONDER = "synth.testing.graphs:echo_responder"
COEVOL_RESPONDER = "tests.coevol_script:coevol_responder"
#: One round: a 4-turn debate, advise, edit, judge in both orders = 8 calls per row (the seed carries
#: the first response; the issue's "~10 calls per row"). Three rounds (the default) make 25-call chains,
#: and over a few hundred rows the end of the input then costs ~7 % by itself: the last rows to start
#: run their chains alone (bench/tail_sim.py, FIFO slots and no engine: 0.93 of the limit for 300 x 25
#: calls, 0.96 for 800 x 8).
COEVOL_OPTIONS = {"max_rounds": 1}


def write_seeds(path: Path, rows: int) -> Path:
    with path.open("w") as handle:
        for i in range(rows):
            handle.write(json.dumps({"text": f"row {i}: the quick brown fox jumps over the lazy dog"}) + "\n")
    return path


def write_coevol_seeds(path: Path, rows: int) -> Path:
    with path.open("w") as handle:
        for i in range(rows):
            seed = {"instruction": f"ACCEPT task {i}: explain why the sky is blue.", "output": "Because."}
            handle.write(json.dumps(seed) + "\n")
    return path


def cpu_now() -> float:
    """CPU seconds of this process plus its waited-for children (``--workers`` processes)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


async def naive(base_url: str, calls: int, concurrency: int, *, transport: str = "httpx") -> dict[str, Any]:
    """The baseline: what a hand-written asyncio script would do for the same requests (free text).

    ``transport="aiohttp"`` gives the SDK the aiohttp transport synth uses (``DefaultAioHttpClient``)."""
    http = openai.DefaultAioHttpClient() if transport == "aiohttp" else None
    client = openai.AsyncOpenAI(
        base_url=base_url, api_key="EMPTY", max_retries=0, timeout=600, http_client=http
    )
    # "helpful assistant": the CoEvol responder answers it too (the naive side of the CoEvol case)
    system, user = "You are a helpful assistant: rewrite the text in plain words.", "Text: {}"
    slots = asyncio.Semaphore(concurrency)
    ok = 0

    async def one(i: int) -> None:
        nonlocal ok
        text = f"row {i}: the quick brown fox jumps over the lazy dog"
        async with slots:
            reply = await client.chat.completions.create(
                model="m",
                messages=[
                    {"role": "system", "content": system},
                    {"role": "user", "content": user.format(text)},
                ],
            )
        if reply.choices[0].message.content is not None:
            ok += 1

    started = time.perf_counter()
    cpu = cpu_now()
    # Rows are started as slots free up (as the engine does), not all at once: a gather over 2,000
    # pending tasks would measure the event loop's queue, not the client.
    pending: set[asyncio.Task[None]] = set()
    for i in range(calls):
        if len(pending) >= concurrency:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        pending.add(asyncio.create_task(one(i)))
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - started
    cpu = cpu_now() - cpu
    await client.close()
    return {"rows": ok, "calls": calls, "elapsed_s": elapsed, "cpu_s": cpu, "rows_per_s": ok / elapsed}


async def engine(
    base_url: str,
    seeds: Path,
    rows: int,
    concurrency: int,
    *,
    graph: str = GRAPH,
    workers: int = 1,
    checkpoints: bool = True,
    cache: bool = True,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``synth run`` in process (``run_session``), ``max_calls = C`` and ``ROW_FACTOR * C`` rows in flight
    (both split between the workers)."""
    with tempfile.TemporaryDirectory() as tmp:
        request = RunRequest(
            graph=graph,
            options=options or {},
            input=seeds,
            out=Path(tmp) / "run",
            models={"default": f"openai:m@{base_url}"},
            concurrency=math.ceil(ROW_FACTOR * concurrency),
            max_calls=concurrency,
            limit=rows,
            checkpoints=checkpoints,
            cache=cache,
            **({"workers": workers} if "workers" in RunRequest.model_fields else {}),
        )
        cpu = cpu_now()
        summary, _ = await run_session(request)
        cpu = cpu_now() - cpu
    if summary.counts.get("ok", 0) != rows:
        raise RuntimeError(f"engine run incomplete: {dict(summary.counts)}")
    return {
        "rows": rows,
        "elapsed_s": summary.elapsed_s,
        "cpu_s": cpu,
        "rows_per_s": rows / summary.elapsed_s,
    }


def naive_processes(base_url: str, calls: int, concurrency: int, processes: int = 2) -> dict[str, Any]:
    """:func:`naive` on aiohttp in ``processes`` forked processes, each with its share of the calls and of
    the semaphore, started together; wall time from before the forks to the last one's end."""
    import multiprocessing

    share = concurrency // processes
    shares = [(calls // processes + (i < calls % processes), share) for i in range(processes)]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        parts = pool.starmap(_naive_part, [(base_url, n, c) for n, c in shares])
    elapsed = time.perf_counter() - started
    ok = sum(part["rows"] for part in parts)
    cpu = sum(part["cpu_s"] for part in parts)
    return {"rows": ok, "calls": calls, "elapsed_s": elapsed, "cpu_s": cpu, "rows_per_s": ok / elapsed}


def _naive_part(base_url: str, calls: int, concurrency: int) -> dict[str, Any]:
    return asyncio.run(naive(base_url, calls, concurrency, transport="aiohttp"))


@dataclass
class Case:
    name: str
    concurrency: int
    latency: dict[str, Any]
    rows: int
    #: Engine variants: label -> engine() keyword arguments.
    engines: dict[str, dict[str, Any]]
    seeds: str = "text"
    naive_transports: tuple[str, ...] = ("httpx", "aiohttp")


def bench_case(case: Case, server: ServerProcess, seeds: Path, repeat: int) -> dict[str, Any]:
    """``repeat`` rounds of every client back to back (naive first); medians over the rounds.

    On a shared machine the available CPU drifts from minute to minute: the ratio to naive is taken
    within each round (clients measured seconds apart), and its median reported. Calls are counted by
    the server; the naive clients make as many calls as the engine's first run made (CoEvol: ~10 a row).

    Every client's run starts from the same seed of the server's latency draws, so the n-th request of
    each gets the same service time: with one seeded sequence running on from client to client, each
    got other draws, and 2,000 draws hold 91 to 126 stragglers (mean 282 to 314 ms): a 10 % difference
    in the work, not in the clients."""
    latency = {"straggler_rate": 0.0, "straggler_factor": 10.0, **case.latency}
    mean_s = latency["mean_ms"] / 1000 * (1 + latency["straggler_rate"] * (latency["straggler_factor"] - 1))
    limit = case.concurrency / mean_s if mean_s else None
    rounds: dict[str, list[dict[str, Any]]] = {}
    calls_per_row = 1.0
    for _ in range(repeat):
        results: dict[str, dict[str, Any]] = {}
        for label, kwargs in case.engines.items():
            server.configure(latency=latency)  # the same latency draws for every client (see above)
            server.reset_counters()
            server_cpu = server.cpu_seconds()
            try:
                got = asyncio.run(engine(server.base_url, seeds, case.rows, case.concurrency, **kwargs))
            except Exception as exc:  # say so and measure once more: one failure must not lose the run
                print(f"{case.name} {label}: {type(exc).__name__}: {exc}; measuring again", flush=True)
                server.reset_counters()
                got = asyncio.run(engine(server.base_url, seeds, case.rows, case.concurrency, **kwargs))
                got["failed_first"] = f"{type(exc).__name__}: {exc}"[:300]
            got["server_cpu_s"] = server.cpu_seconds() - server_cpu
            stats = server.stats()
            got["calls"] = stats["completions"]
            got["max_in_flight_at_server"] = stats["max_in_flight"]
            calls_per_row = got["calls"] / case.rows
            results[label] = got
        for transport in case.naive_transports:
            label = "naive" if transport == "httpx" else f"naive_{transport}"
            calls = round(case.rows * calls_per_row)
            server.configure(latency=latency)
            server_cpu = server.cpu_seconds()
            if transport == "aiohttp_x2":
                got = naive_processes(server.base_url, calls, case.concurrency)
            else:
                got = asyncio.run(naive(server.base_url, calls, case.concurrency, transport=transport))
            results[label] = got
            results[label]["server_cpu_s"] = server.cpu_seconds() - server_cpu
        for got in results.values():
            got["calls_per_s"] = got["calls"] / got["elapsed_s"]
        base = results["naive"]
        for label, got in results.items():
            got["ratio_to_naive"] = got["calls_per_s"] / base["calls_per_s"]
            rounds.setdefault(label, []).append(got)
    out: dict[str, Any] = {"case": case.name, "concurrency": case.concurrency, "latency": latency}
    out.update(repeat=repeat, rows=case.rows, calls_per_row=calls_per_row, limit_calls_per_s=limit)
    for label, runs in rounds.items():
        summary: dict[str, Any] = {
            "calls_per_s": statistics.median(r["calls_per_s"] for r in runs),
            "rows_per_s": statistics.median(r["rows_per_s"] for r in runs),
            "cpu_ms_per_call": statistics.median(1000 * r["cpu_s"] / r["calls"] for r in runs),
            "server_cpu_ms_per_call": statistics.median(1000 * r["server_cpu_s"] / r["calls"] for r in runs),
            "ratio_to_naive": statistics.median(r["ratio_to_naive"] for r in runs),
            "rounds_calls_per_s": [round(r["calls_per_s"], 1) for r in runs],
            "rounds_ratio_to_naive": [round(r["ratio_to_naive"], 3) for r in runs],
        }
        if "max_in_flight_at_server" in runs[0]:
            summary["max_in_flight_at_server"] = max(r["max_in_flight_at_server"] for r in runs)
        if limit:
            summary["fraction_of_limit"] = summary["calls_per_s"] / limit
        # What the machine's CPUs allow when client and server share them: cores / CPU per call of both
        both = summary["cpu_ms_per_call"] + summary["server_cpu_ms_per_call"]
        summary["cpu_ceiling_calls_per_s"] = (os.cpu_count() or 1) * 1000 / both
        out[label] = summary
    return out


def profile_engine(
    server: ServerProcess, seeds: Path, rows: int, concurrency: int, latency_ms: float = 0.0
) -> str:
    """The one-worker engine under pyinstrument (the main thread: the event loop, where the CPU goes)."""
    from pyinstrument import Profiler

    jitter = latency_ms / 4
    server.configure(latency={"mean_ms": latency_ms, "jitter_ms": jitter, "straggler_rate": 0.0})
    profiler = Profiler(async_mode="disabled", interval=0.001)
    profiler.start()
    got = asyncio.run(engine(server.base_url, seeds, rows, concurrency, workers=1))
    profiler.stop()
    tree = profiler.output_text(unicode=False, color=False, show_all=False)
    flat = profiler.output_text(unicode=False, color=False, flat=True)
    detail: dict[str, float] = {}
    by_package = self_time_by_package(profiler, detail)
    idle = by_package.pop(WAITING, 0.0)
    total = sum(by_package.values()) or 1.0
    summary = "\n".join(f"{100 * t / total:5.1f} %  {name}" for name, t in by_package.items())
    summary += f"\n(shares of the samples outside the loop's epoll wait; {WAITING}: {idle:.2f} s)\n\n"
    top = sorted(detail.items(), key=lambda kv: -kv[1])[:30]
    summary += "\n".join(f"{100 * t / total:5.1f} %  {name}" for name, t in top)
    where = f"C = {concurrency}, " + (f"{latency_ms:g} ms latency" if latency_ms else "zero latency")
    cpu = f"{1000 * got['cpu_s'] / rows:.2f} ms CPU per row under the profiler"
    text = (
        f"==== self time by package ({rows} rows, {where}; {cpu}) ====\n{summary}\n\n"
        + tree
        + "\n\n==== flat (self time) ====\n"
        + "\n".join(flat.splitlines()[:80])
    )
    text = text.replace(f"{REPO}/", "")  # a committed result names no developer machine's folders
    default = concurrency == 64 and not latency_ms
    name = "profile.txt" if default else f"profile-C{concurrency}-{latency_ms:g}ms.txt"
    (RESULTS / name).write_text(text)
    return text


def self_time_by_package(profiler: Any, detail: dict[str, float] | None = None) -> dict[str, float]:
    """Sampled self time grouped by where the code lives: which layer the CPU goes to. ``detail`` gets
    the self time of each function in the :data:`DETAILED` groups."""
    groups = {
        "site-packages/openai/": "openai SDK",
        "site-packages/httpx": "httpx/httpcore/anyio (HTTP)",
        "site-packages/aiohttp": "aiohttp (HTTP)",
        "site-packages/multidict": "aiohttp (HTTP)",
        "site-packages/yarl": "aiohttp (HTTP)",
        "openai/_vendor/httpx_aiohttp": "aiohttp (HTTP)",
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
    stack = [(profiler.last_session.root_frame(), "")]
    while stack:
        frame, parent = stack.pop()
        path = frame.file_path or "<built-in>"
        stack.extend((child, path) for child in frame.children)
        if frame.is_synthetic:  # "[self]" leaves: their time is in the parent's total_self_time
            continue
        group = next((g for key, g in groups.items() if key in path), "other (stdlib...)")
        if "selectors.py" in parent and frame.function.split(".")[-1] in ("poll", "select"):
            group = WAITING  # the loop waiting for the server: wall time, not CPU
        if detail is not None and group in DETAILED:
            name = f"{group.split(' ')[0]}: {frame.function} ({Path(path).name})"
            detail[name] = detail.get(name, 0.0) + frame.total_self_time
        totals[group] = totals.get(group, 0.0) + frame.total_self_time
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


WAITING = "waiting in epoll (idle, not CPU)"
#: Groups whose functions are listed one by one under the summary (what "builtins" and "stdlib" are).
DETAILED = ("builtins (socket, sqlite, json...)", "other (stdlib...)", "langgraph (pregel)")


def cases(rows: int, zero_rows: int, coevol_rows: int, workers: int) -> list[Case]:
    jitter = {"mean_ms": 200.0, "jitter_ms": 50.0}
    zero = {"mean_ms": 0.0, "jitter_ms": 0.0}
    both = {"synth_w1": {"workers": 1}, f"synth_w{workers}": {"workers": workers}}
    many = {f"synth_w{workers}": {"workers": workers}}
    return [
        Case("C64_200ms", 64, jitter, rows, both),
        Case("C128_200ms", 128, jitter, rows, many, naive_transports=("httpx", "aiohttp", "aiohttp_x2")),
        Case("C32_200ms", 32, jitter, rows, many),
        Case("C64_stragglers", 64, {**jitter, "straggler_rate": 0.05, "straggler_factor": 10.0}, rows, many),
        Case("C64_zero_latency", 64, zero, zero_rows, both),
        Case(
            "C64_zero_latency_knobs",
            64,
            zero,
            zero_rows,
            {
                "synth_w1_no_checkpoints": {"workers": 1, "checkpoints": False},
                "synth_w1_no_checkpoints_no_cache": {"workers": 1, "checkpoints": False, "cache": False},
            },
            naive_transports=("httpx",),
        ),
        Case(
            "coevol_C64_200ms",
            64,
            jitter,
            coevol_rows,
            {f"synth_w{workers}": {"workers": workers, "graph": "coevol", "options": COEVOL_OPTIONS}},
            seeds="coevol",
            naive_transports=("httpx",),
        ),
    ]


MEMORY_CASE = "memory_w2"


def memory_case(sizes: list[int], workers: int) -> dict[str, Any]:
    """Peak memory of ``--workers`` runs at each size (bench/memory.py), growth against the first size."""
    sys.path.insert(0, str(REPO / "bench"))
    import memory

    runs = memory.measure(sizes, 64, workers, GRAPH)
    last = runs[-1]
    return {
        "case": MEMORY_CASE,
        "workers": workers,
        "graph": GRAPH.replace(f"{REPO}/", ""),
        "sizes": sizes,
        "peak_pss_sum_growth_mb": last["peak_growth_mb"],
        "peak_rss_sum_growth_mb": last["peak_rss_sum_growth_mb"],
        "target_growth_mb": 200,
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--zero-rows", type=int, default=2000, help="rows for the zero-latency cases")
    parser.add_argument(
        "--coevol-rows", type=int, default=800, help="rows for the CoEvol case (8 calls each)"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the multi-worker variant")
    known = [c.name for c in cases(1, 1, 1, 2)] + [MEMORY_CASE]
    parser.add_argument(
        "--only", nargs="*", choices=known, metavar="CASE", help=f"cases (none: --profile only): {known}"
    )
    parser.add_argument(
        "--memory-sizes", type=int, nargs="+", default=[1000, 100_000], help="rows (memory_w2)"
    )
    parser.add_argument("--profile", action="store_true", help="also profile the one-worker engine")
    parser.add_argument("--profile-concurrency", type=int, default=64, help="C of the profiled run")
    parser.add_argument(
        "--profile-latency-ms", type=float, default=0.0, help="server latency of the profiled run"
    )
    parser.add_argument("--profile-rows", type=int, help="rows of the profiled run (default: --zero-rows)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds per case (medians are reported)")
    parser.add_argument("--out", help="results file name under bench/results/ (default: see the module doc)")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    todo = [
        c
        for c in cases(args.rows, args.zero_rows, args.coevol_rows, args.workers)
        if args.only is None or c.name in args.only
    ]
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = {
            "text": write_seeds(
                Path(tmp) / "seeds.jsonl", max(args.rows, args.zero_rows, args.profile_rows or 0)
            ),
            "coevol": write_coevol_seeds(Path(tmp) / "coevol.jsonl", args.coevol_rows),
        }
        for responder, group in (
            (RESPONDER, [c for c in todo if c.seeds == "text"]),
            (COEVOL_RESPONDER, [c for c in todo if c.seeds == "coevol"]),
        ):
            if not group and not (args.profile and responder == RESPONDER):
                continue
            with ServerProcess(responder=responder) as server:
                # Warm-up: the first run imports the client stacks (~1 s of CPU): not a per-call cost.
                server.configure(latency={"mean_ms": 0.0, "jitter_ms": 0.0, "straggler_rate": 0.0})
                graph = GRAPH if responder == RESPONDER else "coevol"
                asyncio.run(
                    engine(server.base_url, inputs[group[0].seeds if group else "text"], 10, 4, graph=graph)
                )
                asyncio.run(naive(server.base_url, 20, 4))
                for case in group:
                    got = bench_case(case, server, inputs[case.seeds], args.repeat)
                    results.append(got)
                    print_case(got)
                if args.profile and responder == RESPONDER:
                    rows = args.profile_rows or args.zero_rows
                    profiled = profile_engine(
                        server, inputs["text"], rows, args.profile_concurrency, args.profile_latency_ms
                    )
                    print(profiled[:6000])
    if args.only is None or MEMORY_CASE in args.only:
        got = memory_case(args.memory_sizes, args.workers)
        results.append(got)
        print(
            f"\n{MEMORY_CASE}: growth {args.memory_sizes[0]} -> {args.memory_sizes[-1]} rows, all processes: "
            f"{got['peak_pss_sum_growth_mb']} MB (PSS sum), {got['peak_rss_sum_growth_mb']} MB (RSS sum)"
        )
    report = {
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version()},
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "cases": results,
    }
    if not results:  # --profile alone: its file is written
        return
    out = RESULTS / (args.out or ("throughput.json" if args.only is None else "throughput-partial.json"))
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


def cpu_model() -> str:
    """The CPU's model name: per-call CPU differs ~2x between the machines this bench has run on."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_case(case: dict[str, Any]) -> None:
    limit = case["limit_calls_per_s"]
    title = f"\n{case['case']}  (C={case['concurrency']}, {case['rows']} rows"
    title += f", {case['calls_per_row']:.1f} calls/row"
    print(title + (f", limit {limit:.0f} calls/s)" if limit else ", CPU bound)"))
    head = f"  {'client':<34}{'calls/s':>9}{'of limit':>10}{'vs naive':>10}{'cpu ms/call':>13}"
    print(head + f"{'server ms/call':>16}{'cpu ceiling':>13}")
    for label, got in case.items():
        if not isinstance(got, dict) or "calls_per_s" not in got:
            continue
        frac = f"{got['fraction_of_limit']:.2f}" if "fraction_of_limit" in got else "-"
        ratio = f"{got['ratio_to_naive']:.2f}"
        line = f"  {label:<34}{got['calls_per_s']:>9.1f}{frac:>10}{ratio:>10}{got['cpu_ms_per_call']:>13.2f}"
        print(line + f"{got['server_cpu_ms_per_call']:>16.2f}{got['cpu_ceiling_calls_per_s']:>13.0f}")


if __name__ == "__main__":
    main()
