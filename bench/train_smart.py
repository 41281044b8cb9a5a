"""SMART end to end on the embedded model: synthesize -> export -> two-stage LoRA SFT -> QA exact match.

    python bench/train_smart.py                 # the experiment: 200 seed rows, 200 held-out rows
    python bench/train_smart.py --smoke         # 3 + 3 rows, 2 steps per stage: checks the pipeline

Cost, measured by the smoke run on 2 shared CPU cores (fp32, other jobs running): synthesis ~170 s per
seed row with the embedded model (3 rows: 506 s), LoRA SFT of the 270M model ~60-250 s per optimizer step
of 8 rows, evaluation ~10 s per question. The full experiment is therefore many hours on such a CPU: run it
on a GPU machine (training and evaluation pick bf16 and the GPU automatically) and/or synthesize with a
served model (``--synth-model openai:MODEL@http://host:8000/v1``); ``--precision bf16`` helps on CPUs
with bf16 units.

Steps (every one resumes: re-running skips what is done):

1. seeds: the first ``--rows`` Natural Questions rows of ``examples/data/qa_passages.jsonl`` (another
   folder with ``--data DIR``; question + gold answers; the passage itself is not used, retrieval is over
   ``corpus.jsonl``); the next ``--eval-rows`` rows are the held-out evaluation set;
2. ``synth run smart`` with ``--synth-model`` (default the embedded ``local:gemma-3-270m``): the gold answer
   is the Response Generator's answer, so the trajectories teach the format and the fact location;
3. ``synth export`` ``sft-short`` and ``sft-long``;
4. ``train hybrid --recipe smart``: stage 1 LoRA SFT on short trajectories, merge, stage 2 on long ones
   (the paper's recipe: LoRA, 2 epochs each, lr 2e-4);
5. ``eval qa`` on the held-out rows with the top-3 BM25 passages, base vs tuned, in the ``plain`` and
   ``smart`` prompt formats.

Writes ``OUT/summary.json`` (and, for a full run, ``bench/results/train_smart.json``). The base 270M
model is weak: expect low absolute EM; the comparison is what matters.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from train.config import HybridSettings  # noqa: E402
from train.eval import run_qa_eval  # noqa: E402
from train.hybrid import run_hybrid  # noqa: E402
from train.runfolder import RunResult  # noqa: E402

DATA = REPO / "examples" / "data"  # bundled; --data points at a larger set with the same two files


def parse_args() -> argparse.Namespace:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "runs" / "train_smart")
    parser.add_argument("--data", type=Path, default=DATA, help="folder: qa_passages.jsonl, corpus.jsonl")
    parser.add_argument("--rows", type=int, default=200, help="seed rows to synthesize")
    parser.add_argument("--eval-rows", type=int, default=200, help="held-out QA rows to evaluate")
    parser.add_argument("--synth-model", default="local:gemma-3-270m", help="model spec that plays the roles")
    parser.add_argument("--model", default="gemma-3-270m", help="base model to fine-tune and compare")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--max-steps", type=int, default=-1, help="> 0 caps each stage (smoke runs)")
    parser.add_argument("--precision", default="auto", help="auto | bf16 | fp32 (bf16: fast on avx512_bf16)")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--max-queries", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024, help="training sequence cap (tokens)")
    parser.add_argument("--styles", default="plain,smart", help="eval prompt formats, comma-separated")
    parser.add_argument("--smoke", action="store_true", help="3 + 3 rows, 2 steps per stage, 1 query")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.eval_rows, args.max_steps, args.max_queries = 3, 3, 2, 1
        args.out = args.out.with_name(args.out.name + "-smoke")
    return args


def write_seeds(data: Path, out: Path, rows: int, eval_rows: int) -> tuple[Path, Path]:
    """Disjoint train seeds and held-out QA rows, in file order (deterministic)."""
    lines = (data / "qa_passages.jsonl").read_text(encoding="utf-8").splitlines()
    if rows + eval_rows > len(lines):
        raise SystemExit(f"asked for {rows} + {eval_rows} rows; qa_passages.jsonl has {len(lines)}")
    parsed = [json.loads(line) for line in lines[: rows + eval_rows]]
    keep = [{"id": r["id"], "question": r["question"], "answers": r["answers"]} for r in parsed]
    seeds, held_out = out / "seeds.jsonl", out / "eval.jsonl"
    seeds.write_text("".join(json.dumps(r) + "\n" for r in keep[:rows]), encoding="utf-8")
    held_out.write_text("".join(json.dumps(r) + "\n" for r in keep[rows:]), encoding="utf-8")
    return seeds, held_out


def synth(*args: str) -> None:
    """The ``synth`` CLI in a subprocess (its own event loop and model engine, freed afterwards)."""
    command = [sys.executable, "-m", "synth", *args]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def main() -> None:
    args = parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    seeds, held_out = write_seeds(args.data, out, args.rows, args.eval_rows)
    corpus = str(args.data / "corpus.jsonl")

    started = time.monotonic()
    run = out / "run"
    synth(
        "run", "smart", "-i", str(seeds), "-o", str(run), "-m", args.synth_model, "--corpus", corpus,
        "-O", f"top_k={args.top_k}", "-O", f"max_queries={args.max_queries}", "-c", str(args.concurrency),
        "--timeout", "900",
    )  # fmt: skip
    timings["synthesize_s"] = time.monotonic() - started
    for fmt in ("sft-short", "sft-long"):
        synth("export", str(run), "-f", fmt, "-o", str(out / fmt))

    started = time.monotonic()
    settings = HybridSettings(
        model=args.model,
        output_dir=str(out / "model"),
        recipe="smart",
        epochs=args.epochs,
        max_steps=args.max_steps,
        learning_rate=2e-4,
        precision=args.precision,
        # Gemma's 262k-token vocabulary makes the logits the memory peak (batch 4 x 700 tokens ~ 10 GB in
        # fp32 on CPU): one row per step, the same effective batch through accumulation.
        batch_size=1,
        grad_accum=8,
        max_length=args.max_length,
        save_steps=100,
        stage1={"data": str(out / "sft-short")},
        stage2={"data": str(out / "sft-long")},
    )
    trained = run_hybrid(settings)
    assert isinstance(trained, RunResult)
    timings["train_s"] = time.monotonic() - started

    evals: dict[str, Any] = {}
    for name, model in (("base", args.model), ("tuned", trained.final)):
        for style in args.styles.split(","):
            started = time.monotonic()
            evals[f"{name}/{style}"] = run_qa_eval(
                model, held_out, out=out / "eval" / f"{name}-{style}", corpus=corpus, retrieve_k=args.top_k,
                style=style, max_new_tokens=48,  # type: ignore[arg-type]
            )  # fmt: skip
            timings[f"eval_{name}_{style}_s"] = time.monotonic() - started
            result = evals[f"{name}/{style}"]
            print(f"{name:5} {style:5}  EM {100 * result['exact_match']:5.1f}  F1 {100 * result['f1']:5.1f}")

    summary = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "training_rows": {
            fmt: json.loads((out / "model" / stage / "plan.json").read_text())["rows"]
            for fmt, stage in (("sft-short", "stage1"), ("sft-long", "stage2"))
        },
        "trained": trained.final,
        "stages": trained.stages,
        "eval": {k: {m: v[m] for m in ("rows", "exact_match", "f1", "style")} for k, v in evals.items()},
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if not args.smoke:
        (REPO / "bench" / "results" / "train_smart.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["eval"], indent=2))


if __name__ == "__main__":
    main()
