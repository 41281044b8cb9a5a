"""Retrieval benchmark on the bundled Natural Questions passages: build time, queries/s, recall@k.

Run ``python bench/retrieval.py [--kinds bm25 dense] [--data DIR]`` (``DIR`` defaults to the bundled
``examples/data``; about 2 minutes on 2 cores with dense, a few seconds without). For each retriever kind:

* **build**: read ``corpus.jsonl`` and index it in memory (dense: embed every passage; the embedding
  model's one-time load is reported apart), then **save** the index folder and **load** it back (what a
  second run pays: the cache hit);
* **queries/s**: all questions of ``qa_passages.jsonl`` one at a time (``search``), in one batch
  (``search_many``), and through the async API the graphs use (``asearch``, 8 in flight);
* **recall@1/3/10**: the fraction of questions whose gold passage (``passage_id``) is in the top k,
  with the question itself as the query.

Timings are noisy on a shared machine; recall is deterministic. Results: bench/results/retrieval.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from synth.retrieval import Retriever, build_index, load_index, save_index  # noqa: E402
from synth.retrieval.indexes import DEFAULT_DENSE_MODEL, _encoder  # noqa: E402

RESULTS = REPO / "bench" / "results"
KS = (1, 3, 10)


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - started


async def async_qps(index: Retriever, questions: list[str], in_flight: int = 8) -> float:
    slots = asyncio.Semaphore(in_flight)

    async def one(query: str) -> None:
        async with slots:
            await index.asearch(query, 3)

    started = time.perf_counter()
    await asyncio.gather(*(one(q) for q in questions))
    return len(questions) / (time.perf_counter() - started)


def bench_kind(kind: str, corpus: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    questions = [r["question"] for r in rows]
    out: dict[str, Any] = {"kind": kind}
    if kind == "dense":
        _, out["model_load_s"] = timed(_encoder, DEFAULT_DENSE_MODEL)
    index, out["build_s"] = timed(build_index, corpus, kind)
    with tempfile.TemporaryDirectory() as tmp:
        folder, out["save_s"] = timed(save_index, index, Path(tmp) / "idx")
        _, out["load_s"] = timed(load_index, folder)
        out["index_mb"] = round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 2)
    _, single = timed(lambda: [index.search(q, 3) for q in questions])
    results, batch = timed(index.search_many, questions, max(KS))
    out["qps_single"] = round(len(questions) / single, 1)
    out["qps_batch"] = round(len(questions) / batch, 1)
    out["qps_async_8"] = round(asyncio.run(async_qps(index, questions)), 1)
    for k in KS:
        found = sum(
            r["passage_id"] in {h.passage.id for h in hits[:k]} for r, hits in zip(rows, results, strict=True)
        )
        out[f"recall@{k}"] = round(found / len(rows), 4)
    for key in ("model_load_s", "build_s", "save_s", "load_s"):
        if key in out:
            out[key] = round(out[key], 3)
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data_help = "folder with corpus.jsonl and qa_passages.jsonl"
    parser.add_argument("--data", type=Path, default=REPO / "examples" / "data", help=data_help)
    parser.add_argument("--kinds", nargs="+", default=["bm25", "dense"], choices=["bm25", "dense"])
    args = parser.parse_args()
    corpus = args.data / "corpus.jsonl"
    rows = [json.loads(line) for line in (args.data / "qa_passages.jsonl").open(encoding="utf-8")]
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "corpus": {"passages": sum(1 for _ in corpus.open()), "questions": len(rows)},
        "results": [bench_kind(kind, corpus, rows) for kind in args.kinds],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "retrieval.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {RESULTS / 'retrieval.json'}")


if __name__ == "__main__":
    main()
