"""Benchmark of the embedded backend (``local:gemma-3-270m``): load times and batched throughput.

Run ``python bench/embedded.py`` (about 5-10 minutes on 2 cores). Prints a table and writes
``bench/results/embedded.json``. Measures:

* first load: conversion of the GGUF into a temporary cache (a subprocess, as a fresh install would),
  against loading the already converted folder (tokenizer + weights + grammar tokenizer info);
* decode throughput (completion tokens / wall second) with 1, 4, 8 and 16 concurrent requests, plain
  text (fixed budget, no stop) and JSON-schema constrained (three times the budget, rows end when the
  JSON closes), in fp32 and bf16. Tokens are completion tokens of the final answers. Each setting runs
  ``--repeats`` times and the best run is reported (all runs are kept in the JSON).

The target is batched throughput >= 3x one-at-a-time. Timings are noisy if other processes use the CPU
(best-of-N reduces that; the load average is recorded before and after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autogen_core.models import SystemMessage, UserMessage  # noqa: E402

from synth.models.local import LocalChatCompletionClient, model_path  # noqa: E402
from synth.models.local.engine import Engine, close_shared_engines  # noqa: E402
from synth.models.local.hardware import cpu_supports_bf16  # noqa: E402

TOPICS = [
    "the ocean", "a rainy city", "coffee", "chess", "the moon", "bicycles", "old libraries", "volcanoes",
    "winter mornings", "jazz", "a small bakery", "trains", "gardening", "the desert", "robots", "lighthouses",
]  # fmt: skip


class Review(BaseModel):
    topic: str = Field(max_length=40)
    sentiment: Literal["positive", "negative", "neutral"]
    keywords: list[Annotated[str, Field(max_length=24)]] = Field(max_length=3)


def _messages(i: int) -> list[Any]:
    return [
        SystemMessage(content="You write short, plain answers."),
        UserMessage(content=f"Write a few sentences about {TOPICS[i % len(TOPICS)]}.", source="user"),
    ]


async def _throughput(
    client: LocalChatCompletionClient, batch: int, constrained: bool, max_tokens: int
) -> dict:
    args = {"max_tokens": max_tokens, "temperature": 0}
    schema = Review if constrained else None
    started = time.perf_counter()
    results = await asyncio.gather(
        *(client.create(_messages(i), json_output=schema, extra_create_args=args) for i in range(batch))
    )
    wall = time.perf_counter() - started
    tokens = sum(r.usage.completion_tokens for r in results)
    if constrained:
        for r in results:
            if r.finish_reason == "stop":
                Review.model_validate_json(str(r.content))
    return {
        "batch": batch,
        "constrained": constrained,
        "tokens": tokens,
        "seconds": round(wall, 2),
        "tokens_per_s": round(tokens / wall, 2),
        "finish": [r.finish_reason for r in results],
    }


def _time_conversion() -> float:
    """Seconds for a cold conversion in a throwaway cache (subprocess: its ~3 GB peak is freed after)."""
    with tempfile.TemporaryDirectory(prefix="synth-bench-cache-") as cache:
        env = {**os.environ, "SYNTH_CACHE": cache, "PYTHONPATH": str(REPO)}
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "synth.models.local.convert", "gemma-3-270m"],
            env=env,
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - started


def _time_cached_load(path: Path) -> dict[str, float]:
    engine = Engine(path, dtype="bf16")
    started = time.perf_counter()
    engine.tokenizer  # noqa: B018 - timing the lazy load
    tokenizer_s = time.perf_counter() - started
    engine.load()
    total = time.perf_counter() - started
    engine.close()
    return {"tokenizer_s": round(tokenizer_s, 2), "total_s": round(total, 2)}


async def _bench_dtype(dtype: str, batches: list[int], max_tokens: int, repeats: int) -> list[dict]:
    client = LocalChatCompletionClient(
        "gemma-3-270m", dtype=dtype, max_batch_size=max(batches), section_stop=False
    )
    await asyncio.to_thread(client.engine.load)
    await asyncio.to_thread(client.engine.grammars.get, Review)  # compile outside the timings
    await _throughput(client, 2, True, 8)  # warm-up
    rows = []
    for constrained in (False, True):
        for batch in batches:
            budget = 3 * max_tokens if constrained else max_tokens  # room to close the JSON: no retries
            runs = [await _throughput(client, batch, constrained, budget) for _ in range(repeats)]
            row = max(runs, key=lambda r: r["tokens_per_s"])  # best of N: other processes only slow runs down
            row["tokens_per_s_all"] = [r["tokens_per_s"] for r in runs]
            row["dtype"] = dtype
            rows.append(row)
            kind = "json" if constrained else "plain"
            print(
                f"  {dtype:5} {kind:5} batch {batch:2}: {row['tokens']:4} tokens in {row['seconds']:6.2f} s"
                f" = {row['tokens_per_s']:6.2f} tok/s (runs: {row['tokens_per_s_all']})",
                flush=True,
            )
    close_shared_engines()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", default="1,4,8,16")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting; the best is reported")
    parser.add_argument("--skip-conversion", action="store_true", help="do not time a cold conversion")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "embedded.json")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    load_before = os.getloadavg()

    path = model_path("gemma-3-270m")  # converts into the default cache if needed
    print("timing a cold conversion in a temp cache ...", flush=True)
    conversion_s = None if args.skip_conversion else round(_time_conversion(), 1)
    cached = _time_cached_load(path)
    print(f"cold conversion: {conversion_s} s; cached load: {cached['total_s']} s", flush=True)

    rows: list[dict] = []
    for dtype in args.dtypes.split(","):
        rows += asyncio.run(_bench_dtype(dtype, batches, args.max_tokens, args.repeats))

    speedups = {}
    for dtype in args.dtypes.split(","):
        for constrained in (False, True):
            sel = {
                r["batch"]: r["tokens_per_s"]
                for r in rows
                if r["dtype"] == dtype and r["constrained"] == constrained
            }
            if 1 in sel:
                key = f"{dtype}_{'json' if constrained else 'plain'}"
                speedups[key] = {str(b): round(v / sel[1], 2) for b, v in sel.items()}

    print("\n| dtype | mode  | " + " | ".join(f"batch {b:2}" for b in batches) + " |")
    print("|-------|-------|" + "|".join("----------" for _ in batches) + "|")
    for dtype in args.dtypes.split(","):
        for constrained in (False, True):
            sel = {
                r["batch"]: r["tokens_per_s"]
                for r in rows
                if r["dtype"] == dtype and r["constrained"] == constrained
            }
            cells = " | ".join(f"{sel.get(b, float('nan')):8.1f}" for b in batches)
            print(f"| {dtype:5} | {'json' if constrained else 'plain':5} | {cells} |")
    print("\nspeed-up over batch 1 (tokens/s ratio):", json.dumps(speedups))
    print(f"cold conversion {conversion_s} s, cached load {cached}")

    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_bf16": cpu_supports_bf16(),
            "python": platform.python_version(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "max_tokens": args.max_tokens,
        "cold_conversion_s": conversion_s,
        "cached_load": cached,
        "throughput": rows,
        "speedup_vs_batch1": speedups,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
