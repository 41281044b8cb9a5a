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
        if corpus is not None or retrieve is not None:
            raise TrainError("--attack evaluates the ATM run's own contexts; drop --corpus / --retrieve")
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
        )
        under = ""
    _console.print(
        f"{summary['rows']} rows: EM {100 * summary['exact_match']:.1f} F1 {100 * summary['f1']:.1f}{under} "
        f"({summary['passages']}, {summary['seconds']:.1f}s) -> {summary['predictions']}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    print(json.dumps(summary))
