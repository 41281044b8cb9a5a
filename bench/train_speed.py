"""SFT training tokens/s and QA evaluation prompts/s on the embedded model: the old path vs the new defaults.

    python bench/train_speed.py --sft-rows 2 --eval-rows 16 --repeats 3
    python bench/train_speed.py --sft-data out/smart-long --qa-data qa.jsonl --skip eval

All variants run in the same process on the same rows and settings; each unit of work (an SFT batch, half
of the eval prompts) is done once per variant per repeat, in alternating order (ABC, CBA), and the figures
are medians over the repeats of rates and of per-repeat ratios, so a load change on a shared machine hits
every variant alike:

* SFT — the trainer ``synth train sft`` builds (TRL SFTTrainer, LoRA r=16 all-linear, assistant-only
  loss, batch ``--sft-batch``), its own batches through ``training_step`` (forward + backward), the model
  prepared as ``train()`` prepares it (CPU autocast under bf16). ``before``: fp32, LM head at every position
  (TRL's CPU default), torch's default threads (every core) — the path before the speed work; ``bf16``:
  ``precision: auto`` (bf16 on AMX / avx512_bf16 CPUs), head at loss positions, default threads;
  ``after``: the same with the new thread default (the idle cores, :func:`train.speed.pick_threads`,
  picked again before each unit as a run starting then would). Losses per variant are recorded
  (``max_loss_difference`` vs ``before``).
* eval — :class:`train.generation.FolderGenerator`, greedy, batch ``--eval-batch``. ``before``: fp32,
  input order, every row to EOS or ``max_new_tokens``, default threads; ``bf16``: the default dtype (bf16
  on such CPUs), length-sorted batches that stop each row at its answer; ``after``: that with the new
  thread default. ``same_answers_as_before`` and ``exact_match`` compare the scored answers.

Without ``--sft-data`` / ``--qa-data`` the rows are generated here in the shape of SMART long trajectories
(a question, three ~150-token passages in ``tool`` turns, three short assistant segments: ~680 tokens,
~7.7 % of them trained) and of retrieval QA prompts (three passages per question, ~600 tokens). Writes
``bench/results/train_speed.json`` (after each part).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from train.config import SFTSettings  # noqa: E402
from train.qa import build_messages, exact_match, extract_answer, load_qa  # noqa: E402

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


def alternate(names: list[str], unit: int) -> list[str]:
    """ABC on even units, CBA on odd ones: a load change on the shared machine hits every variant alike."""
    return names if unit % 2 == 0 else names[::-1]


def set_threads(auto: bool, default: int) -> list[int]:
    """torch's thread count for the next variant: the idle cores now (the new default, what a run that
    started now would pick), or torch's own default (every core). Returns the pick, for the record."""
    import torch

    from train.speed import pick_threads

    if not auto:
        torch.set_num_threads(default)
        return []
    threads = pick_threads()
    torch.set_num_threads(threads)
    return [threads]


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def summarise(per_repeat: dict[str, list[float]], baseline: str, unit: str) -> dict[str, Any]:
    """Median rate per variant over the repeats, and the median of the per-repeat ratios to ``baseline``
    (a ratio within one repeat compares work done under the same load)."""
    out: dict[str, Any] = {}
    for name, rates in per_repeat.items():
        ratios = [r / b for r, b in zip(rates, per_repeat[baseline], strict=True)]
        out[name] = {f"median_{unit}": median(rates), unit: [round(r, 3) for r in rates]}
        if name != baseline:
            out[name]["speedup"] = median(ratios)
            out[name]["speedups"] = [round(r, 2) for r in ratios]
    return out


def sft_trainer(args: argparse.Namespace, data: Path, work: Path, precision: str) -> Any:
    """The trainer ``synth train sft`` builds for these settings, its model prepared as ``train()`` does
    (under bf16 Accelerate wraps the forward in CPU autocast; LoRA adapters stay fp32)."""
    from train.job import build_plan
    from train.model_setup import load_tokenizer
    from train.sft import build_sft_trainer

    settings = SFTSettings(
        model=args.model, data=str(data), output_dir=str(work / f"sft-{precision}"),
        batch_size=args.sft_batch, max_length=args.max_length, precision=precision, limit=args.sft_rows,
        device="cpu",
    )  # fmt: skip
    plan, job = build_plan("sft", settings)
    job.tokenizer = load_tokenizer(job.base)
    trainer = build_sft_trainer(job)
    trainer.model = trainer.accelerator.prepare_model(trainer.model)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which is not run here
    trainer.resolved_precision = plan.precision
    return trainer


def bench_sft(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The real ``synth train sft`` trainer (TRL SFTTrainer + LoRA, fused head) and its real batches; each
    batch goes through ``training_step`` (forward + backward) once per variant per repeat, in alternating
    order. Variants: ``before`` (fp32, head at every position: TRL's CPU default, the path before the speed
    work), ``head`` (fp32, head at loss positions), ``after`` (the new defaults: ``precision: auto`` — bf16
    on CPUs with AMX / avx512_bf16 — and head at loss positions)."""
    from datasets import Dataset

    from train.speed import use_compact_head

    data = args.sft_data
    if data is None:
        data = work / "sft"
        (data / "data").mkdir(parents=True)
        rows = [smart_long(i) for i in range(args.sft_rows)]
        Dataset.from_list(rows).to_parquet(str(data / "data" / "train-00000-of-00001.parquet"))
    variants = {
        "before": ("fp32", False, False),
        "bf16": (args.precision, True, False),
        "after": (args.precision, True, True),
    }
    trainers = {p: sft_trainer(args, data, work, p) for p in {v[0] for v in variants.values()}}
    batches = [trainers["fp32"]._prepare_inputs(b) for b in trainers["fp32"].get_train_dataloader()]
    for trainer in trainers.values():
        trainer.training_step(trainer.model, batches[0])  # warm-up, untimed
    names = list(variants)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    loss_tokens = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
    rates: dict[str, list[float]] = {v: [] for v in names}
    losses: dict[str, list[float]] = {v: [] for v in names}
    picked: list[int] = []
    for repeat in range(args.repeats):
        seconds = dict.fromkeys(names, 0.0)
        for i, batch in enumerate(batches):
            for name in alternate(names, repeat * len(batches) + i):
                precision, compact, auto_threads = variants[name]
                trainer = trainers[precision]
                use_compact_head(compact)
                picked += set_threads(auto_threads, args.default_threads)
                trainer.model.zero_grad()
                started = time.monotonic()
                loss = trainer.training_step(trainer.model, batch)
                seconds[name] += time.monotonic() - started
                if repeat == 0:
                    losses[name].append(float(loss))
        for name in names:
            rates[name].append(tokens / seconds[name])
        print(
            f"sft repeat {repeat}: " + ", ".join(f"{n} {rates[n][-1]:.1f} tok/s" for n in names), flush=True
        )
    use_compact_head(True)
    results: dict[str, Any] = {
        "rows": len(batches) * args.sft_batch,
        "batch_size": args.sft_batch,
        "repeats": args.repeats,
        "tokens": tokens,
        "loss_tokens": loss_tokens,
        "variants": {
            n: {
                "precision": trainers[p].resolved_precision,
                "head_on": "loss" if c else "all",
                "threads": "idle cores" if t else args.default_threads,
            }
            for n, (p, c, t) in variants.items()
        },
        "threads_picked": picked,
    }
    for name, figures in summarise(rates, "before", "tokens_per_s").items():
        results["variants"][name].update(figures)
    results["losses"] = {n: [round(x, 4) for x in v] for n, v in losses.items()}
    results["max_loss_difference"] = {
        n: round(max(abs(a - b) for a, b in zip(losses[n], losses["before"], strict=True)), 4)
        for n in names[1:]
    }
    return results


def bench_eval(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """:class:`train.generation.FolderGenerator`, greedy, batch ``--eval-batch``, on the same prompts; each
    half of the prompts is generated once per variant per repeat, in alternating order. ``before``: fp32,
    input order, every row to EOS or ``max_new_tokens``; ``stop``: fp32, length-sorted, each row stops at
    its answer; ``after``: the new default dtype (bf16 on CPUs with AMX / avx512_bf16) with ``stop``."""
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
    folder = model_path(args.model)
    variants = {
        "before": ("fp32", False, False),
        "bf16": (args.eval_dtype, True, False),
        "after": (args.eval_dtype, True, True),
    }
    generators = {
        d: FolderGenerator(folder, args.max_new_tokens, args.eval_batch, dtype=d)
        for d in {v[0] for v in variants.values()}
    }
    for generator in generators.values():
        generator.generate(prompts[:1])  # warm-up, untimed
    names = list(variants)
    half = len(prompts) // 2
    halves = [prompts[:half], prompts[half:]]
    rates: dict[str, list[float]] = {v: [] for v in names}
    answers: dict[str, list[str]] = {v: [] for v in names}
    new_tokens = dict.fromkeys(names, 0)
    picked: list[int] = []
    for repeat in range(args.repeats):
        seconds = dict.fromkeys(names, 0.0)
        for i, part in enumerate(halves):
            for name in alternate(names, repeat * 2 + i):
                dtype, fast, auto_threads = variants[name]
                generator = generators[dtype]
                generator.fast = fast
                picked += set_threads(auto_threads, args.default_threads)
                started = time.monotonic()
                raw = generator.generate(part)
                seconds[name] += time.monotonic() - started
                if repeat == 0:
                    answers[name] += [extract_answer(text) for text in raw]
                    tokenize = generator.tokenizer
                    new_tokens[name] += sum(
                        len(tokenize(t, add_special_tokens=False)["input_ids"]) for t in raw
                    )
        for name in names:
            rates[name].append(len(prompts) / seconds[name])
        print(
            f"eval repeat {repeat}: " + ", ".join(f"{n} {rates[n][-1]:.3f} prompts/s" for n in names),
            flush=True,
        )
    results: dict[str, Any] = {
        "prompts": len(prompts),
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.eval_batch,
        "repeats": args.repeats,
        "variants": {
            n: {
                "dtype": str(generators[d].dtype).removeprefix("torch."),
                "fast": fast,
                "threads": "idle cores" if t else args.default_threads,
                "mean_new_tokens": round(new_tokens[n] / len(prompts), 1),
            }
            for n, (d, fast, t) in variants.items()
        },
        "threads_picked": picked,
    }
    for name, figures in summarise(rates, "before", "prompts_per_s").items():
        results["variants"][name].update(figures)
    results["same_answers_as_before"] = {
        n: sum(a == b for a, b in zip(answers[n], answers["before"], strict=True)) for n in names[1:]
    }
    gold = [r["answers"] for r in rows]
    results["exact_match"] = {
        n: round(sum(exact_match(a, g) for a, g in zip(answers[n], gold, strict=True)) / len(gold), 3)
        for n in names
    }
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
    parser.add_argument("--sft-batch", type=int, default=1, help="SFT rows per batch")
    parser.add_argument("--eval-batch", type=int, default=8, help="eval prompts per generate() call")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the same work (medians)")
    parser.add_argument("--precision", default="auto", help="SFT 'after' precision (auto: bf16 on AMX CPUs)")
    parser.add_argument(
        "--eval-dtype", default="default", help="eval 'after' weights: default/auto, fp32, bf16"
    )
    parser.add_argument("--skip", choices=["sft", "eval"], help="leave one part out")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "train_speed.json")
    args = parser.parse_args()
    import torch

    args.default_threads = torch.get_num_threads()  # before any FolderGenerator applies its own pick
    summary: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg": os.getloadavg()},
        "model": args.model,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for part, bench in (("sft", bench_sft), ("eval", bench_eval)):
            if args.skip != part:
                summary[part] = bench(args, Path(tmp))
                summary["machine"]["loadavg_after"] = os.getloadavg()
                args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")  # each part
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
