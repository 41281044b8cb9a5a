"""Wall time of ``synth run --executor ray`` against the asyncio executor on the loopback server.

One-role graph (``synth.testing.graphs:ECHO``), server in its own process with fixed latency. Each run is
a fresh ``synth run`` subprocess into a new folder; ``wall`` is the whole command (interpreter start,
imports, Ray start or connect, actors), ``run`` is the run itself as ``runs/NAME/log.jsonl`` records it.
Both executors get the same rows in flight: asyncio ``--concurrency A*C``, Ray ``A`` actors x ``C``.

    python bench/ray_executor.py --rows 50 500 --latency-ms 200 --actors 2 --concurrency 16
    python bench/ray_executor.py --rows 500 --address auto      # a cluster started with `ray start --head`
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synth.testing.process import ServerProcess


def synth_run(args: list[str], folder: Path) -> tuple[float, float]:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "synth", "run", *args, "--out", str(folder)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wall = time.perf_counter() - started
    events = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    end = next(e for e in reversed(events) if e.get("event") == "run_end")
    assert end["totals"].get("ok") == end["counts"].get("ok"), end
    return wall, float(end["elapsed_s"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16, help="rows in flight per Ray actor")
    parser.add_argument("--block-rows", type=int, default=100)
    parser.add_argument("--address", default=None, help="Ray cluster to join (default: a local one per run)")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    seeds = work / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(max(options.rows))))
    with ServerProcess(latency_ms=options.latency_ms, responder="synth.testing.graphs:echo_responder") as srv:
        common = ["synth.testing.graphs:ECHO", "--input", str(seeds), "--model", f"openai:m@{srv.base_url}"]
        ray_args = ["--executor", "ray", "--ray-actors", str(options.actors), "--ray-block-rows",
                    str(options.block_rows), "--concurrency", str(options.concurrency)]  # fmt: skip
        if options.address:
            ray_args += ["--address", options.address]
        print(
            f"latency {options.latency_ms} ms; {options.actors} actors x {options.concurrency} rows in flight"
        )
        for rows in options.rows:
            limit = ["--limit", str(rows)]
            total = str(options.actors * options.concurrency)
            a_wall, a_run = synth_run([*common, *limit, "--concurrency", total], work / f"asyncio-{rows}")
            r_wall, r_run = synth_run([*common, *limit, *ray_args], work / f"ray-{rows}")
            print(f"{rows:>6} rows  asyncio wall {a_wall:6.2f}s run {a_run:6.2f}s   "
                  f"ray wall {r_wall:6.2f}s run {r_run:6.2f}s")  # fmt: skip


if __name__ == "__main__":
    main()
