"""ATM on the embedded model: EM under attack before and after one MITO iteration, on held-out questions.

    nice -n 10 python bench/atm_mito.py                  # the experiment (~30-40 min on 2 shared cores)
    python bench/atm_mito.py --train 2 --eval 2 --smoke  # 2 + 2 questions, 2 steps per stage: the pipeline

Both the attacker and the generator start as ``local:gemma-3-270m`` (the base model). Steps, all through
``synth train atm`` (train/atm_loop.py), each resumable (re-running skips what is done):

1. seeds: the first ``--train`` Natural Questions rows of ``examples/data/qa_passages.jsonl`` (or
   ``--data FILE``) are the training seeds, the next ``--eval`` rows the held-out set (disjoint; the
   loop refuses shared questions);
   both files are written into ``--out``, never into the repository;
2. the held-out attack: the ATM graph on the held-out questions with the base attacker (fixed for every
   checkpoint), then the base generator's EM on clean vs attacked contexts;
3. stage 0 (``--initial-sft``, default on): the graph on the training seeds, generator LoRA SFT on its
   ``sft`` export (30 % closed-book / 70 % with documents), evaluated;
4. iteration 1: the graph again (stage 0's attacker samples replayed from the call cache, fabrications
   re-ranked by the SFT generator's NLL), attacker DPO (beta 0.2) on ``atm-dpo``, generator MITO (beta 0.2)
   on ``mito``, evaluated.

Also evaluates the base model in the ``plain`` prompt style (one user turn, ``Answer briefly.``), which suits
a base model better than the ATM generator's system + ``Documents:`` prompt.

Writes ``OUT/`` (the loop's folder) and ``bench/results/atm_mito.json`` (figures, sizes, timings).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from train.atm_config import AtmSettings  # noqa: E402
from train.atm_loop import run_atm_loop  # noqa: E402
from train.eval_attack import run_attack_eval  # noqa: E402

DATA = REPO / "examples" / "data" / "qa_passages.jsonl"  # bundled; --data for a larger set


def parse_args() -> argparse.Namespace:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "runs" / "atm_mito")
    parser.add_argument("--data", type=Path, default=DATA, help="NQ rows: question, answers, passage")
    parser.add_argument("--train", type=int, default=24, help="training seed questions")
    parser.add_argument("--eval", type=int, default=40, help="held-out questions")
    parser.add_argument("--n-fabrications", type=int, default=2, help="attacker samples per question")
    parser.add_argument("--model", default="gemma-3-270m", help="attacker and generator starting weights")
    parser.add_argument("--no-initial-sft", dest="initial_sft", action="store_false")
    parser.add_argument("--epochs", type=float, default=2.0, help="SFT and MITO epochs (DPO: 1)")
    parser.add_argument(
        "--precision", default="auto", help="auto (bf16 on AMX CPUs, else fp32) | bf16 | fp32"
    )
    parser.add_argument("--smoke", action="store_true", help="2 optimizer steps per stage")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results" / "atm_mito.json")
    return parser.parse_args()


def write_splits(data: Path, out: Path, train: int, held_out: int) -> tuple[Path, Path]:
    """The first ``train`` rows and the next ``held_out`` rows of ``data``, as two files in ``out``."""
    lines = [line for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) < train + held_out:
        raise SystemExit(f"{data} has {len(lines)} rows, fewer than --train + --eval = {train + held_out}")
    out.mkdir(parents=True, exist_ok=True)
    files = (out / "train.jsonl", out / "held_out.jsonl")
    for path, part in zip(files, (lines[:train], lines[train : train + held_out]), strict=True):
        path.write_text("\n".join(part) + "\n", encoding="utf-8")
    return files


def settings_for(args: argparse.Namespace, train: Path, held_out: Path) -> AtmSettings:
    steps = {"max_steps": 2} if args.smoke else {}
    return AtmSettings.model_validate(
        {
            "model": args.model,
            "data": str(train),
            "eval_data": str(held_out),
            "output_dir": str(args.out / "loop"),
            "iterations": 1,
            "initial_sft": args.initial_sft,
            "atm": {"n_fabrications": args.n_fabrications},
            "run": {"concurrency": 8, "max_calls": 16},
            "precision": args.precision,
            "epochs": args.epochs,
            "batch_size": 2,
            "grad_accum": 2,
            "logging_steps": 2,
            "save_steps": 10,
            "dpo": {"epochs": 1},
            **steps,
        }
    )


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    train, held_out = write_splits(args.data, args.out, args.train, args.eval)
    settings = settings_for(args, train, held_out)
    summary = run_atm_loop(settings, log=lambda line: print(line, flush=True))
    assert isinstance(summary, dict)
    plain = run_attack_eval(
        args.model,
        Path(summary["eval_attack"]["run"]),
        out=args.out / "base-plain",
        style="plain",
        max_new_tokens=settings.eval.max_new_tokens,
    )
    result: dict[str, Any] = {
        "experiment": "ATM on the embedded model: EM under attack before/after one MITO iteration",
        "data": str(args.data.name),
        "train_questions": args.train,
        "held_out_questions": args.eval,
        "n_fabrications": args.n_fabrications,
        "initial_sft": args.initial_sft,
        "smoke": args.smoke,
        "checkpoints": summary["checkpoints"],
        "base_plain_style": {
            k: plain[k] for k in ("exact_match", "f1", "attacked_exact_match", "attacked_f1")
        },
        "eval_attack": summary["eval_attack"],
        "iteration_1": summary["iteration_details"][0],
        "seconds": round(time.monotonic() - started, 1),
        "loop_seconds": summary["seconds"],
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_at_end": os.getloadavg(),
        },
        "out": str(args.out),
    }
    text = json.dumps(result, indent=2) + "\n"
    if not args.smoke:  # the committed copy names paths relative to the repository, not this machine's
        args.results.write_text(text.replace(f"{REPO}/", ""), encoding="utf-8")
    (args.out / "result.json").write_text(text, encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("checkpoints", "base_plain_style", "seconds")}, indent=2))


if __name__ == "__main__":
    main()
