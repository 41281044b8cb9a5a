"""SFT training tokens/s and QA evaluation prompts/s on the embedded model, before and after the speed work.

    python bench/train_speed.py                       # 8 SFT rows, 16 eval prompts (a few minutes on 2 cores)
    python bench/train_speed.py --sft-rows 16 --eval-rows 32 --sft-data out/smart-long --qa-data qa.jsonl

"Before" and "after" run in the same process on the same rows and settings; only the switches differ:

* SFT: ``head_on: all`` (TRL's CPU default: the fused LM head projects every position) vs ``head_on: loss``
  (only positions that carry a loss). LoRA, fp32, batch 1 x grad_accum 4, one epoch over the rows.
  ``--bf16`` adds an "after, bf16" run (CPUs with AMX/avx512_bf16).
* eval: :class:`train.generation.FolderGenerator` with ``fast=False`` (input order, every row to EOS or
  ``max_new_tokens``) vs ``fast=True`` (length-sorted batches, each row stops once its answer is fixed);
  greedy, same prompts, fp32; the bench counts how many scored answers equal the "before" ones.
  ``--bf16`` adds the fast path with bf16 weights (``synth eval qa --dtype bf16``).

Without ``--sft-data`` / ``--qa-data`` the rows are generated here in the shape of SMART long trajectories
(a question, three ~150-token retrieved passages in ``tool`` turns, three short assistant segments) and of
retrieval QA prompts (three passages per question). Writes ``bench/results/train_speed.json``.
"""

from __future__ import annotations

import argparse
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

from train.config import SFTSettings  # noqa: E402
from train.qa import build_messages, extract_answer, load_qa  # noqa: E402
from train.runfolder import RunResult  # noqa: E402
from train.sft import run_sft  # noqa: E402

TOPICS = [
    ("Canberra", "Canberra is the capital city of Australia", "the capital of Australia", "Canberra"),
    (
        "Moby-Dick",
        "Moby-Dick is an 1851 novel by Herman Melville",
        "the author of Moby-Dick",
        "Herman Melville",
    ),
    ("Jupiter", "Jupiter is the largest planet in the Solar System", "the largest planet", "Jupiter"),
    ("Hamlet", "Hamlet is a tragedy written by William Shakespeare", "the author of Hamlet", "Shakespeare"),
    (
        "Eiffel Tower",
        "The Eiffel Tower was completed in 1889 in Paris",
        "when the Eiffel Tower was built",
        "1889",
    ),
    (
        "Nile",
        "The Nile is a major north-flowing river in Africa",
        "the river that flows north in Africa",
        "Nile",
    ),
    (
        "Mona Lisa",
        "The Mona Lisa was painted by Leonardo da Vinci",
        "the painter of the Mona Lisa",
        "Leonardo",
    ),
    (
        "Everest",
        "Mount Everest is Earth's highest mountain above sea level",
        "the highest mountain",
        "Everest",
    ),
]
FILLER = (
    " It has been described in many encyclopedias, travel guides and school textbooks, which discuss its "
    "history, its cultural significance and the many events associated with it over the centuries."
)


def passage(i: int, j: int) -> dict[str, str]:
    title, fact, _, _ = TOPICS[(i + j) % len(TOPICS)]
    return {"id": f"p{i}-{j}", "title": title, "text": fact + "." + FILLER * 5}


def smart_long(i: int) -> dict[str, Any]:
    _, _, about, answer = TOPICS[i % len(TOPICS)]
    messages: list[dict[str, Any]] = [{"role": "user", "content": f"What is {about}? (variant {i})"}]
    messages.append(
        {"role": "assistant", "name": "Intent Reconstructor", "content": json.dumps({"queries": [about]})}
    )
    for j in range(3):
        p = passage(i, j)
        messages.append(
            {"role": "tool", "name": "Knowledge Retriever", "content": f"[{p['id']}] {p['text']}"}
        )
    spans = {"relevant": True, "spans": [passage(i, 0)["text"].split(".")[0]]}
    messages.append({"role": "assistant", "name": "Fact Locator", "content": json.dumps(spans)})
    reply = {"answer": answer, "citations": [passage(i, 0)["id"]]}
    messages.append({"role": "assistant", "name": "Response Generator", "content": json.dumps(reply)})
    return {"id": f"long-{i}", "messages": messages}


def qa_row(i: int) -> dict[str, Any]:
    _, _, about, answer = TOPICS[i % len(TOPICS)]
    return {
        "id": f"q{i}",
        "question": f"What is {about}?",
        "answers": [answer],
        "ctxs": [passage(i, j) for j in range(3)],
    }


def sft_tokens(data: Path, model: str, max_length: int) -> int:
    """Tokens the trainer sees in one epoch (the chat template applied, truncated like training)."""
    from datasets import load_dataset

    from train.common import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model(model))
    rows = load_dataset("parquet", data_files=str(data / "data" / "*.parquet"), split="train")
    return sum(
        min(len(tokenizer.apply_chat_template(r["messages"], tokenize=True)), max_length) for r in rows
    )


def bench_sft(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from datasets import Dataset

    data = args.sft_data
    if data is None:
        data = work / "sft"
        (data / "data").mkdir(parents=True)
        rows = [smart_long(i) for i in range(args.sft_rows)]
        Dataset.from_list(rows).to_parquet(str(data / "data" / "train-00000-of-00001.parquet"))
    tokens = sft_tokens(data, args.model, args.max_length)
    variants = [("before", "all", "fp32"), ("after", "loss", "fp32")]
    if args.bf16:
        variants.append(("after_bf16", "loss", "bf16"))
    results: dict[str, Any] = {"rows": args.sft_rows, "tokens_per_epoch": tokens}
    for name, head_on, precision in variants:
        settings = SFTSettings(
            model=args.model, data=str(data), output_dir=str(work / f"sft-{name}"), epochs=1, batch_size=1,
            grad_accum=4, max_length=args.max_length, precision=precision, head_on=head_on,  # type: ignore[arg-type]
            limit=args.sft_rows, save_steps=10_000, logging_steps=1, device="cpu", warmup=0,
        )  # fmt: skip
        cpu = time.process_time()
        trained = run_sft(settings, log=lambda _: None)
        cpu = time.process_time() - cpu
        assert isinstance(trained, RunResult)
        results[name] = {
            "head_on": head_on,
            "precision": precision,
            "train_s": trained.seconds,
            "cpu_s_with_load": round(cpu, 1),
            "tokens_per_s": round(tokens / trained.seconds, 1),
            "train_loss": trained.train_loss,
        }
        print(f"sft {name:10} {results[name]}", flush=True)
    for name, _, _ in variants[1:]:
        results[f"speedup_{name}"] = round(
            results[name]["tokens_per_s"] / results["before"]["tokens_per_s"], 2
        )
    return results


def bench_eval(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from synth.models.local.convert import model_path
    from train.generation import FolderGenerator

    data = args.qa_data
    if data is None:
        data = work / "qa.jsonl"
        data.write_text(
            "".join(json.dumps(qa_row(i)) + "\n" for i in range(args.eval_rows)), encoding="utf-8"
        )
    rows = load_qa(data, args.eval_rows)
    prompts = [build_messages(r["question"], r["passages"], "plain") for r in rows]
    results: dict[str, Any] = {
        "prompts": len(prompts),
        "max_new_tokens": args.max_new_tokens,
        "batch_size": 8,
    }
    answers: dict[str, list[str]] = {}
    variants = [("before", False, "fp32"), ("after", True, "fp32")]
    if args.bf16:
        variants.append(("after_bf16", True, "bf16"))
    for name, fast, dtype in variants:
        generator = FolderGenerator(model_path(args.model), args.max_new_tokens, 8, fast=fast, dtype=dtype)
        started, cpu = time.monotonic(), time.process_time()
        raw = generator.generate(prompts)
        seconds, cpu = time.monotonic() - started, time.process_time() - cpu
        answers[name] = [extract_answer(text) for text in raw]
        tokens = [len(generator.tokenizer(text, add_special_tokens=False)["input_ids"]) for text in raw]
        results[name] = {
            "dtype": dtype,
            "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu, 2),
            "prompts_per_s": round(len(prompts) / seconds, 3),
            "mean_new_tokens": round(sum(tokens) / len(tokens), 1),
            "same_answers_as_before": sum(
                a == b for a, b in zip(answers["before"], answers[name], strict=True)
            ),
        }
        print(f"eval {name:10} {results[name]}", flush=True)
    for name, _, _ in variants[1:]:
        results[f"speedup_{name}"] = round(
            results[name]["prompts_per_s"] / results["before"]["prompts_per_s"], 2
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--sft-rows", type=int, default=8)
    parser.add_argument("--eval-rows", type=int, default=16)
    parser.add_argument(
        "--sft-data", type=Path, help="an sft/sft-long export folder (default: generated rows)"
    )
    parser.add_argument("--qa-data", type=Path, help="a QA .jsonl with passages (default: generated rows)")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--bf16", action="store_true", help="also time SFT in bf16 (AMX / avx512_bf16 CPUs)")
    parser.add_argument("--skip", choices=["sft", "eval"], help="leave one part out")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "train_speed.json")
    args = parser.parse_args()
    summary: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg": os.getloadavg()},
        "model": args.model,
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.skip != "eval":
            summary["eval"] = bench_eval(args, Path(tmp))
        if args.skip != "sft":
            summary["sft"] = bench_sft(args, Path(tmp))
    summary["machine"]["loadavg_after"] = os.getloadavg()
    args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
