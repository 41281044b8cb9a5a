"""``synth eval qa``: exact match / F1 of a trained folder or any model spec on QA rows; with ``--attack``,
on the clean and the attacked contexts of an ATM run (:mod:`train.eval_attack`).

Prompts use the same plain chat format the exports train on (see :mod:`train.qa`), so a model trained by
``synth train`` is evaluated in the format it learned.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

eval_app = typer.Typer(help="Evaluate models (QA exact match and F1).", no_args_is_help=True)
_console = Console(stderr=True)


@eval_app.callback()
def _group() -> None:
    """Evaluate models: `synth eval qa --model PATH_OR_SPEC --data QA.jsonl`."""


@eval_app.command("qa")
def qa(
    model: Annotated[
        str,
        typer.Option(
            help="A synth train run folder / adapter / model folder, gemma-3-270m, or a spec "
            "(openai:MODEL@URL, local:PATH, replay:FILE)."
        ),
    ],
    data: Annotated[
        Path | None, typer.Option(help="QA .jsonl: question, answers (list), optional passage / ctxs.")
    ] = None,
    attack: Annotated[
        Path | None,
        typer.Option(
            help="An ATM run folder or mito export: EM/F1 on its clean vs attacked contexts "
            "(instead of --data)."
        ),
    ] = None,
    corpus: Annotated[
        str | None,
        typer.Option(help="Retrieve passages from this corpus (.jsonl/.parquet, folder or index)."),
    ] = None,
    retrieve: Annotated[
        int | None, typer.Option(help="Passages per question from --corpus (default 3); 0 = closed book.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate the first N rows only.")] = None,
    style: Annotated[
        str | None,
        typer.Option(
            help="plain: one user turn; smart: SMART transcript (passages as retriever turns); atm: ATM's "
            "generator prompt. Default: plain, with --attack atm."
        ),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget per answer.")] = 32,
    batch_size: Annotated[int, typer.Option(help="Rows per generate() call (model folders).")] = 8,
    dtype: Annotated[
        str,
        typer.Option(
            help="Model folders: default / auto (bf16 on GPUs and on CPUs with AMX/avx512_bf16, else "
            "fp32), fp32, bf16."
        ),
    ] = "default",
    few_shot: Annotated[
        int, typer.Option(help="Put K worked examples (from --few-shot-from) before every prompt.")
    ] = 0,
    few_shot_from: Annotated[
        Path | None,
        typer.Option(help="QA .jsonl of TRAINING questions for --few-shot (eval questions are refused)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default evals/MODEL--DATA).")
    ] = None,
) -> None:
    """Exact match and F1 (SQuAD normalisation); writes predictions.jsonl and summary.json."""
    from train.errors import TrainError
    from train.eval import run_qa_eval
    from train.eval_attack import run_attack_eval

    style = style or ("atm" if attack else "plain")
    if style not in ("plain", "smart", "atm"):
        raise TrainError(f"--style must be plain, smart or atm, got {style!r}")
    if (data is None) == (attack is None):
        raise TrainError(
            "give exactly one of --data QA.jsonl (questions with passages) or --attack ATM_RUN_OR_EXPORT "
            "(clean vs attacked contexts of an ATM run)"
        )
    if attack is not None:
        if corpus is not None or retrieve is not None or few_shot:
            raise TrainError(
                "--attack evaluates the ATM run's own contexts; drop --corpus / --retrieve / --few-shot"
            )
        summary = run_attack_eval(
            model,
            attack,
            out=out,
            limit=limit,
            style=style,  # type: ignore[arg-type]
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
        )
        attacked_em, attacked_f1 = summary["attacked_exact_match"], summary["attacked_f1"]
        under = f" | attacked EM {100 * attacked_em:.1f} F1 {100 * attacked_f1:.1f}"
    else:
        assert data is not None
        summary = run_qa_eval(
            model,
            data,
            out=out,
            corpus=corpus,
            retrieve_k=retrieve,
            limit=limit,
            style=style,  # type: ignore[arg-type]
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            few_shot=few_shot,
            few_shot_from=few_shot_from,
            dtype=dtype,
        )
        intervals = summary["intervals"]
        under = " | 95% CI EM {:.1f}-{:.1f} F1 {:.1f}-{:.1f}".format(
            100 * intervals["exact_match"]["low"],
            100 * intervals["exact_match"]["high"],
            100 * intervals["f1"]["low"],
            100 * intervals["f1"]["high"],
        )
    _console.print(
        f"{summary['rows']} rows: EM {100 * summary['exact_match']:.1f} F1 {100 * summary['f1']:.1f}{under} "
        f"({summary['passages']}, {summary['seconds']:.1f}s) -> {summary['predictions']}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    print(json.dumps(summary))


@eval_app.command("compare")
def compare(
    a: Annotated[Path, typer.Argument(help="predictions.jsonl (or eval folder) of model A (the baseline).")],
    b: Annotated[Path, typer.Argument(help="predictions.jsonl (or eval folder) of model B.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the result as JSON.")] = None,
) -> None:
    """B minus A on the same questions: EM and F1 difference, paired bootstrap 95% interval, p-value."""
    from train.stats import compare_predictions

    result = compare_predictions(a, b)
    for metric in ("exact_match", "f1"):
        r = result[metric]
        _console.print(
            f"{metric:11} A {100 * r['a']:5.1f}  B {100 * r['b']:5.1f}  B-A {100 * r['difference']:+5.1f} "
            f"[{100 * r['low']:+.1f}, {100 * r['high']:+.1f}]  p={r['p_value']:.4f}  "
            f"({result['questions']} questions)",
            markup=False,
            highlight=False,
        )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result))


@eval_app.command("plot")
def plot(
    summaries: Annotated[list[Path], typer.Argument(help="summary.json files (or eval folders), in order.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")],
    label: Annotated[
        list[str] | None, typer.Option(help="A bar label per summary (default: its model).")
    ] = None,
) -> None:
    """A PNG bar chart of exact match per model with 95% bootstrap intervals."""
    from train.stats import plot_exact_match

    _console.print(f"wrote {plot_exact_match(summaries, out, label)}", markup=False, highlight=False)


@eval_app.command("split")
def split(
    data: Annotated[Path, typer.Argument(help="QA .jsonl to split (rows are copied unchanged).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for train.jsonl, dev.jsonl, eval.jsonl.")],
    eval_size: Annotated[int, typer.Option("--eval", help="Held-out evaluation rows.")],
    dev_size: Annotated[int, typer.Option("--dev", help="Dev rows (for choices; from the train side).")] = 0,
    seed: Annotated[int, typer.Option(help="Shuffle seed.")] = 0,
) -> None:
    """Split QA rows so that no id and no normalised question is shared between train, dev and eval."""
    from train.heldout import read_rows, split_heldout, write_split

    sides = split_heldout(read_rows(data), eval_size, dev_size=dev_size, seed=seed)
    written = write_split(sides, out)
    counts = ", ".join(f"{side} {len(rows)}" for side, rows in sides.items())
    _console.print(f"{counts} -> {out}", markup=False, highlight=False)
    print(json.dumps(written))
