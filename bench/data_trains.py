"""Data that trains (issue 17): the framework's own loop, from public `synth` commands only.

    python bench/data_trains.py --smoke          # 4 train + 6 held-out questions, 2 steps: checks the loop
    python bench/data_trains.py                  # 200 train + 300 held-out questions (the experiment)

Every phase is one or more `synth` commands in a subprocess, and every phase resumes: re-running the same
command skips what is done (a run folder resumes itself, exports and evaluations are skipped when their
folder is complete, training run folders resume from their last checkpoint).

1. split: ``synth eval split`` of examples/data/qa_passages.jsonl into train / held-out questions with no
   shared id or normalised question; the first ``--train`` train questions are the seeds (question and
   gold answers only: the passages come from retrieval over corpus.jsonl);
2. synthesize: ``synth run smart`` with the embedded model playing every SMART role (intent, retrieval
   queries, fact location, response) at ``--concurrency`` rows in flight;
3. filter by the environment and export: the gold answers check the model's answer (``exact_match`` on
   ``result.model_answer``); ``dpo`` pairs (gold vs the model's wrong answer) are exported from all rows
   first, then ``--sft-from correct`` filters the run and exports only the model's own correct
   trajectories, ``--sft-from all`` (default) exports every trajectory with the gold answer as the
   Response Generator's target (SMART's corrections);
4. train: ``synth train sft`` (LoRA) on ``sft``, then ``synth train dpo`` from the SFT model on ``dpo``
   (``--dpo-format``: ``dpo`` pairs follow the bare question, ``dpo-long`` ones the retrieved passages, as
   in the evaluation prompt; give both to train one SFT->DPO model each);
5. evaluate on the held-out questions (same retrieval, passages, prompt style and decoding for every
   model): base zero-shot, base few-shot (``--few-shot K`` examples from the training questions), SFT,
   SFT->DPO; ``synth eval compare`` (paired bootstrap) of each trained model against few-shot and
   zero-shot, and ``synth eval plot``.

Writes OUT/summary.json (EM/F1 per model, comparisons, the time split synthesis / training / evaluation)
and OUT/em.png; a full run also copies them to bench/results/data_trains.json and docs/img/data_trains.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "data"


def parse_args() -> argparse.Namespace:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "runs" / "data_trains")
    parser.add_argument("--data", type=Path, default=DATA, help="folder: qa_passages.jsonl, corpus.jsonl")
    parser.add_argument("--train", type=int, default=200, help="training questions to synthesize")
    parser.add_argument("--eval", type=int, default=300, help="held-out questions")
    parser.add_argument("--synth-model", default="local:gemma-3-270m", help="spec that plays the roles")
    parser.add_argument("--model", default="gemma-3-270m", help="base model to fine-tune and evaluate")
    parser.add_argument("--concurrency", type=int, default=16, help="rows in flight during synthesis")
    parser.add_argument("--sft-from", choices=("all", "correct"), default="all")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--max-steps", type=int, default=-1, help="> 0 caps each training run (smoke)")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--precision", default="auto", help="auto | bf16 | fp32")
    parser.add_argument("--few-shot", type=int, default=3, help="worked examples for the few-shot baseline")
    parser.add_argument("--top-k", type=int, default=3, help="passages per question (synthesis and eval)")
    parser.add_argument("--style", default="smart", help="eval prompt format: smart | plain")
    parser.add_argument("--skip-dpo", action="store_true", help="stop after SFT")
    parser.add_argument(
        "--dpo-format", choices=("dpo", "dpo-long"), action="append",
        help="dpo (default): pairs after the bare question (cheap); dpo-long: after the passages (the eval "
        "prompt); repeat it to train one SFT->DPO model per format",
    )  # fmt: skip
    parser.add_argument("--dpo-epochs", type=float, default=None, help="default: --epochs")
    parser.add_argument("--dpo-lr", type=float, default=None, help="default: --lr")
    parser.add_argument("--smoke", action="store_true", help="4 + 6 questions, 2 steps per training run")
    args = parser.parse_args()
    args.dpo_format = list(dict.fromkeys(args.dpo_format or ["dpo"]))
    if args.smoke:
        args.train, args.eval, args.max_steps, args.few_shot = 4, 6, 2, 1
        args.out = args.out.with_name(args.out.name + "-smoke")
    return args


def synth(*args: str) -> None:
    """One public ``synth`` command in a subprocess (its own model engine, freed when it exits)."""
    command = [sys.executable, "-m", "synth", *args]
    print("$ synth", " ".join(args), flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def done(folder: Path, marker: str) -> bool:
    return (folder / marker).is_file()


def split(args: argparse.Namespace, out: Path) -> tuple[Path, Path]:
    """(training seeds, held-out questions): disjoint by id and by normalised question text."""
    folder = out / "split"
    if not done(folder, "eval.jsonl"):
        synth(
            "eval", "split", str(args.data / "qa_passages.jsonl"), "-o", str(folder), "--eval", str(args.eval)
        )
    rows = [json.loads(line) for line in (folder / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    if len(rows) < args.train:
        raise SystemExit(f"--train {args.train}: the split has {len(rows)} training questions")
    seeds = out / "seeds.jsonl"
    keep = [{"id": r["id"], "question": r["question"], "answers": r["answers"]} for r in rows[: args.train]]
    seeds.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")
    return seeds, folder / "eval.jsonl"


def synthesize(args: argparse.Namespace, out: Path, seeds: Path) -> Path:
    run = out / "run"
    synth(
        "run", "smart", "-i", str(seeds), "-o", str(run), "-m", args.synth_model,
        "--corpus", str(args.data / "corpus.jsonl"), "-O", f"top_k={args.top_k}", "-O", "max_queries=1",
        "-c", str(args.concurrency), "--timeout", "900",
    )  # fmt: skip
    return run


def export(run: Path, fmt: str, folder: Path) -> Path:
    if not done(folder, "README.md"):
        synth("export", str(run), "-f", fmt, "-o", str(folder), "--overwrite")
    return folder


def exports(args: argparse.Namespace, out: Path, run: Path) -> tuple[Path, dict[str, Path]]:
    """The sft export folder and the preference ones by format; the environment's check decides what SFT
    trains on."""
    # before filtering: the misses are the pairs
    dpo = {fmt: export(run, fmt, out / "data" / fmt) for fmt in args.dpo_format}
    if args.sft_from == "correct":
        synth("filter", str(run), "--filter", "exact_match field=result.model_answer")
    return export(run, "sft", out / "data" / "sft"), dpo


def train(args: argparse.Namespace, out: Path, sft: Path, dpo: dict[str, Path]) -> dict[str, Path]:
    common = ["--max-steps", str(args.max_steps), "--precision", args.precision, "--merge"]
    models = {"sft": out / "models" / "sft"}
    sft_args = ["--data", str(sft), "-o", str(models["sft"]), "--epochs", str(args.epochs)]
    sft_args += ["--lr", str(args.lr)]
    synth("train", "sft", "--model", args.model, *sft_args, *common)
    for fmt, data in ({} if args.skip_dpo else dpo).items():
        # DPO starts from the merged SFT model; its reference model is that model too
        name = "sft-" + fmt  # sft-dpo, sft-dpo-long
        models[name] = out / "models" / name
        dpo_args = ["--data", str(data), "-o", str(models[name])]
        dpo_args += ["--epochs", str(args.dpo_epochs or args.epochs), "--lr", str(args.dpo_lr or args.lr)]
        synth("train", "dpo", "--model", str(models["sft"] / "merged"), *dpo_args, *common)
    return models


def evaluate(
    args: argparse.Namespace, out: Path, held_out: Path, seeds: Path, models: dict[str, Path]
) -> dict[str, Path]:
    """Eval folders by model name: the same retrieval, passages, style and decoding for every model."""
    runs: dict[str, tuple[str, list[str]]] = {
        "zero-shot": (args.model, []),
        "few-shot": (args.model, ["--few-shot", str(args.few_shot), "--few-shot-from", str(seeds)]),
        **{name: (str(path), []) for name, path in models.items()},
    }
    folders: dict[str, Path] = {}
    corpus = str(args.data / "corpus.jsonl")
    for name, (model, extra) in runs.items():
        folder = folders[name] = out / "eval" / name
        if not done(folder, "summary.json"):
            synth(
                "eval", "qa", "--model", model, "--data", str(held_out), "--corpus", corpus,
                "--retrieve", str(args.top_k), "--style", args.style, "--dtype", "auto", "-o", str(folder),
                *extra,
            )  # fmt: skip
    return folders


def rows_of(export: Path) -> int:
    """Rows of a `synth export` folder (its parquet files' metadata; nothing is loaded)."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(export.rglob("*.parquet")))


def compare(out: Path, folders: dict[str, Path]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for trained in (name for name in folders if name not in ("zero-shot", "few-shot")):
        for baseline in ("few-shot", "zero-shot"):
            target = out / "compare" / f"{trained}-vs-{baseline}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            synth("eval", "compare", str(folders[baseline]), str(folders[trained]), "-o", str(target))
            results[f"{trained} vs {baseline}"] = json.loads(target.read_text(encoding="utf-8"))
    summaries = [str(folder / "summary.json") for folder in folders.values()]
    labels = [arg for name in folders for arg in ("--label", name)]
    synth("eval", "plot", *summaries, *labels, "-o", str(out / "em.png"))
    return results


def repo_relative(value: Any) -> Any:
    """``value`` with every path inside this checkout written relative to it."""
    if isinstance(value, dict):
        return {k: repo_relative(v) for k, v in value.items()}
    if isinstance(value, list):
        return [repo_relative(v) for v in value]
    if isinstance(value, str):
        return value.replace(f"{REPO}/", "")
    return value


def main() -> None:
    args = parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    # Time spent per phase, summed over every invocation: a run that was interrupted and resumed reports
    # all the time it took, not only the last invocation's (resumed phases add ~0)
    timings = out / "timings.json"
    clock: dict[str, float] = json.loads(timings.read_text()) if timings.is_file() else {}

    def timed(phase: str, started: float) -> None:
        clock[phase] = round(clock.get(phase, 0.0) + time.monotonic() - started, 1)
        timings.write_text(json.dumps(clock) + "\n")

    started = time.monotonic()
    seeds, held_out = split(args, out)
    run = synthesize(args, out, seeds)
    sft, dpo = exports(args, out, run)
    timed("synthesis_s", started)
    started = time.monotonic()
    models = train(args, out, sft, dpo)
    for done_before in sorted((out / "models").glob("*/result.json")):  # models an earlier invocation trained
        models.setdefault(done_before.parent.name, done_before.parent)
    timed("training_s", started)
    started = time.monotonic()
    folders = evaluate(args, out, held_out, seeds, models)
    timed("evaluation_s", started)
    comparisons = compare(out, folders)
    evals = {
        name: json.loads((f / "summary.json").read_text(encoding="utf-8")) for name, f in folders.items()
    }
    summary = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "eval": {
            name: {k: e.get(k) for k in ("rows", "exact_match", "f1", "intervals")}
            for name, e in evals.items()
        },
        "training_rows": {"sft": rows_of(sft), **{fmt: rows_of(folder) for fmt, folder in dpo.items()}},
        "comparisons": comparisons,
        "timings_s": clock,
        "total_min": round(sum(clock.values()) / 60, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if not args.smoke:
        shared = json.dumps(repo_relative(summary), indent=2) + "\n"  # no developer's paths in the repo
        (REPO / "bench" / "results" / "data_trains.json").write_text(shared)
        shutil.copy(out / "em.png", REPO / "docs" / "img" / "data_trains.png")
    print(json.dumps({"eval": summary["eval"], "timings_s": clock}, indent=2))


if __name__ == "__main__":
    main()
