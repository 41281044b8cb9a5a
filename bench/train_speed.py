"""SFT training tokens/s and QA evaluation prompts/s on the embedded model, before and after the speed work.

    python bench/train_speed.py                    # 4 SFT rows, 16 eval prompts
    python bench/train_speed.py --sft-data out/smart-long --qa-data qa.jsonl --precision bf16

"Before" and "after" run in the same process on the same rows and settings; only the switch differs, and
each unit of work is timed both ways in alternating order (ABBA), so a load change on a shared machine
hits both alike:

* SFT: the trainer ``synth train sft`` builds (TRL SFTTrainer, LoRA r=16 all-linear, assistant-only loss),
  its own batches (batch 1); each batch goes through ``training_step`` (forward + backward) with
  ``head_on: all`` (TRL's CPU default: the fused LM head projects every position) and ``head_on: loss``
  (only positions that carry a loss). The losses of both must agree (``max_loss_difference``).
* eval: :class:`train.generation.FolderGenerator`, greedy, batch 8, ``fast=False`` (input order, every
  row to EOS or ``max_new_tokens``) vs ``fast=True`` (length-sorted batches, each row stops once its
  answer is fixed); ``same_answers`` counts scored answers that agree.

Without ``--sft-data`` / ``--qa-data`` the rows are generated here in the shape of SMART long trajectories
(a question, three ~150-token passages in ``tool`` turns, three short assistant segments: ~670 tokens,
~7 % of them trained) and of retrieval QA prompts (three passages per question). Writes
``bench/results/train_speed.json``.
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

VARIANTS = ("before", "after")
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


def bench_sft(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The real ``synth train sft`` trainer (TRL SFTTrainer + LoRA, fused head), its real batches; each batch
    is timed through ``training_step`` (forward + backward) with the head at all positions and at loss
    positions, alternating which goes first (ABBA), so a load change on a shared machine hits both alike."""
    from datasets import Dataset

    from train.job import build_plan
    from train.model_setup import load_tokenizer
    from train.sft import build_sft_trainer
    from train.speed import use_compact_head

    data = args.sft_data
    if data is None:
        data = work / "sft"
        (data / "data").mkdir(parents=True)
        rows = [smart_long(i) for i in range(args.sft_rows)]
        Dataset.from_list(rows).to_parquet(str(data / "data" / "train-00000-of-00001.parquet"))
    settings = SFTSettings(
        model=args.model, data=str(data), output_dir=str(work / "sft-run"), batch_size=1,
        max_length=args.max_length, precision=args.precision, limit=args.sft_rows, device="cpu",
    )  # fmt: skip
    _, job = build_plan("sft", settings)
    job.tokenizer = load_tokenizer(job.base)
    trainer = build_sft_trainer(job)
    model = trainer.model
    model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which is not run here
    batches = [trainer._prepare_inputs(batch) for batch in trainer.get_train_dataloader()]
    trainer.training_step(model, batches[0])  # warm-up, untimed
    timed: dict[str, dict[str, float]] = {
        v: {"seconds": 0.0, "tokens": 0, "loss_tokens": 0} for v in VARIANTS
    }
    losses: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for i, batch in enumerate(batches):
        for name in VARIANTS if i % 2 == 0 else VARIANTS[::-1]:
            use_compact_head(name == "after")
            model.zero_grad()
            started = time.monotonic()
            loss = trainer.training_step(model, batch)
            timed[name]["seconds"] += time.monotonic() - started
            timed[name]["tokens"] += int(batch["attention_mask"].sum())
            timed[name]["loss_tokens"] += int((batch["labels"][:, 1:] != -100).sum())
            losses[name].append(float(loss))
    use_compact_head(True)
    results: dict[str, Any] = {"rows": len(batches), "precision": args.precision}
    for name in VARIANTS:
        t = timed[name]
        results[name] = {
            "head_on": "all" if name == "before" else "loss",
            "seconds": round(t["seconds"], 1),
            "tokens": t["tokens"],
            "loss_tokens": t["loss_tokens"],
            "tokens_per_s": round(t["tokens"] / t["seconds"], 2),
        }
        print(f"sft {name:6} {results[name]}", flush=True)
    results["speedup"] = round(results["after"]["tokens_per_s"] / results["before"]["tokens_per_s"], 2)
    results["max_loss_difference"] = max(
        abs(a - b) for a, b in zip(losses["before"], losses["after"], strict=True)
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
    generator = FolderGenerator(model_path(args.model), args.max_new_tokens, 8, dtype=args.eval_dtype)
    halves = [prompts[: len(prompts) // 2], prompts[len(prompts) // 2 :]]
    timed = {v: {"seconds": 0.0, "new_tokens": 0} for v in VARIANTS}
    answers: dict[str, list[str]] = {v: [] for v in VARIANTS}
    for i, half in enumerate(halves):
        for name in VARIANTS if i % 2 == 0 else VARIANTS[::-1]:
            generator.fast = name == "after"
            started = time.monotonic()
            raw = generator.generate(half)
            timed[name]["seconds"] += time.monotonic() - started
            answers[name] += [extract_answer(text) for text in raw]
            timed[name]["new_tokens"] += sum(
                len(generator.tokenizer(text, add_special_tokens=False)["input_ids"]) for text in raw
            )
    for name in VARIANTS:
        results[name] = {
            "fast": name == "after",
            "seconds": round(timed[name]["seconds"], 1),
            "prompts_per_s": round(len(prompts) / timed[name]["seconds"], 3),
            "mean_new_tokens": round(timed[name]["new_tokens"] / len(prompts), 1),
        }
        print(f"eval {name:6} {results[name]}", flush=True)
    results["speedup"] = round(results["after"]["prompts_per_s"] / results["before"]["prompts_per_s"], 2)
    results["same_answers"] = sum(a == b for a, b in zip(answers["before"], answers["after"], strict=True))
    results["dtype"] = str(generator.dtype).removeprefix("torch.")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--sft-rows", type=int, default=4)
    parser.add_argument("--eval-rows", type=int, default=16)
    parser.add_argument(
        "--sft-data", type=Path, help="an sft/sft-long export folder (default: generated rows)"
    )
    parser.add_argument("--qa-data", type=Path, help="a QA .jsonl with passages (default: generated rows)")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--precision", default="fp32", help="SFT precision (bf16: AMX / avx512_bf16 CPUs)")
    parser.add_argument("--eval-dtype", default="fp32", help="eval weights: fp32, bf16, auto")
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
