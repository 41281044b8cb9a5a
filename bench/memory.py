"""Peak memory of ``synth run`` against input size: RSS must stay flat (growth <= 200 MB at 100k rows).

Run ``python bench/memory.py`` (``--sizes 1000 10000 100000``; 100k rows take ~10 minutes on 2 cores).
Each size runs in a fresh child process — the one-role graph ``synth.testing.graphs:ECHO`` through
:func:`synth.engine.session.run_session` (records, checkpoints and call cache on, as in production),
concurrency 32, against one zero-latency loopback server process — and reports:

* ``baseline_mb``: RSS after imports and a 50-row warm-up run (the engine's fixed cost),
* ``peak_mb``: the process's peak RSS (``ru_maxrss``), and ``growth_mb`` = peak - baseline,
* ``rss_samples_mb``: RSS sampled every second (a leak shows as a slope),
* ``rows_per_s``.

With ``--workers N`` (N > 1) the run forks N worker processes: memory is then the **sum of PSS**
(proportional set size: pages shared by the forked workers counted once, split between them) of this
process and its workers, sampled every 0.25 s; ``peak_mb`` is the highest sum, and the growth that matters
is the difference of peaks between sizes (``peak_growth_mb``, against the smallest size measured).
``peak_rss_sum_mb`` is the highest plain **sum of RSS** of the same processes (shared pages counted once
per process: an upper bound), with its growth ``peak_rss_sum_growth_mb``.
``--graph`` picks the graph (default the ``ECHO`` graph; ``bench/throughput.py --only memory_w2`` runs
this script's :func:`measure` on the one-role YAML graph ``bench/one_role.yaml``, 1k and 100k rows).

What grows with the input by design: the runner numbers duplicate rows with a ``Counter`` of row keys and,
on a resumed run, loads the ids of stored records (a few dozen bytes per row each). Everything else is
bounded by the concurrency (rows in flight, write batches) or lives in SQLite on disk.
Results: bench/results/memory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"
ECHO = "synth.testing.graphs:ECHO"


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _pss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # the worker just exited
        pass
    return 0.0


def _proc_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # the worker just exited
        return 0.0


def _tree() -> list[int]:
    me = os.getpid()
    with open(f"/proc/{me}/task/{me}/children") as handle:
        return [me, *(int(pid) for pid in handle.read().split())]


def _tree_pss_mb() -> float:
    """PSS of this process and its children (the ``--workers`` processes)."""
    return sum(_pss_mb(pid) for pid in _tree())


def _tree_rss_mb() -> float:
    """RSS of this process and its children, summed (pages shared after the fork counted in each)."""
    return sum(_proc_rss_mb(pid) for pid in _tree())


def child(rows: int, base_url: str, concurrency: int, workers: int = 1, graph: str = ECHO) -> dict[str, Any]:
    """One measured run in this (fresh) process."""
    from synth.engine.session import RunRequest, run_session

    with tempfile.TemporaryDirectory() as tmp:
        seeds = Path(tmp) / "seeds.jsonl"
        with seeds.open("w") as handle:
            for i in range(rows):
                text = f"row {i}: the quick brown fox jumps over the lazy dog"
                handle.write(json.dumps({"text": text}) + "\n")

        def request(out: str, limit: int | None = None) -> RunRequest:
            return RunRequest(
                graph=graph,
                input=seeds,
                out=Path(tmp) / out,
                models={"default": f"openai:m@{base_url}"},
                concurrency=concurrency,
                max_calls=concurrency,
                limit=limit,
                workers=workers,
            )

        asyncio.run(run_session(request("warmup", limit=50)))
        baseline = _rss_mb()
        # ru_maxrss cannot be reset: the warm-up's peak counts too, which only makes the growth pessimistic.
        samples: list[float] = []
        rss_sums: list[float] = []
        stop = threading.Event()

        measure = _rss_mb if workers == 1 else _tree_pss_mb
        baseline = measure()

        def sample() -> None:
            while not stop.wait(1.0 if workers == 1 else 0.25):
                samples.append(round(measure(), 1))
                if workers > 1:
                    rss_sums.append(round(_tree_rss_mb(), 1))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        summary, _ = asyncio.run(run_session(request("run")))
        elapsed = time.perf_counter() - started
        stop.set()
        sampler.join()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if workers == 1 else max(samples)
        return {
            "graph": graph.replace(f"{REPO}/", ""),  # a committed result names no developer's folders
            "rows": rows,
            "workers": workers,
            "ok": summary.counts.get("ok", 0),
            "baseline_mb": round(baseline, 1),
            "peak_mb": round(peak, 1),
            "growth_mb": round(peak - baseline, 1),
            "end_rss_mb": round(_rss_mb(), 1),
            "rows_per_s": round(rows / elapsed, 1),
            "rss_samples_mb": samples[:: max(1, len(samples) // 60)],
            "peak_rss_sum_mb": round(max(rss_sums or [peak]), 1),
        }


def measure(sizes: list[int], concurrency: int, workers: int, graph: str = ECHO) -> list[dict[str, Any]]:
    """Each size in a fresh child process, one zero-latency loopback server; growth against the first size."""
    from synth.testing.process import ServerProcess

    results = []
    with ServerProcess(responder="synth.testing.graphs:echo_responder") as server:
        for rows in sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(rows), "--url", server.base_url,
                 "--concurrency", str(concurrency), "--workers", str(workers), "--graph", graph],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
            result = json.loads(line[7:])
            results.append(result)
            print(
                f"{rows:>7} rows, {workers} worker(s): baseline {result['baseline_mb']:.0f} MB, peak "
                f"{result['peak_mb']:.0f} MB (RSS sum {result['peak_rss_sum_mb']:.0f} MB), "
                f"{result['rows_per_s']:.0f} rows/s",
                flush=True,
            )
    for result in results:
        result["peak_growth_mb"] = round(result["peak_mb"] - results[0]["peak_mb"], 1)
        result["peak_rss_sum_growth_mb"] = round(result["peak_rss_sum_mb"] - results[0]["peak_rss_sum_mb"], 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--graph", default=ECHO, help="graph to run (default: the ECHO test graph)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.child, args.url, args.concurrency, args.workers, args.graph)
        print("RESULT " + json.dumps(result), flush=True)
        return
    results = measure(args.sizes, args.concurrency, args.workers, args.graph)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "memory.json"
    previous = json.loads(path.read_text()).get("runs", []) if path.exists() else []
    # keep other sizes' and worker counts' latest figures: they run separately
    measured = {(r["rows"], r["workers"], r["graph"]) for r in results}
    runs = [
        *(r for r in previous if (r["rows"], r.get("workers", 1), r.get("graph", ECHO)) not in measured),
        *results,
    ]
    runs.sort(key=lambda r: (r.get("graph", ECHO), r.get("workers", 1), r["rows"]))
    report = {"concurrency": args.concurrency, "load_avg": os.getloadavg(), "runs": runs}
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {RESULTS / 'memory.json'}")


if __name__ == "__main__":
    main()
