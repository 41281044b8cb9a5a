"""``synth eval qa``: exact match / F1 of a trained folder or any model spec on QA rows.

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
    data: Annotated[Path, typer.Option(help="QA .jsonl: question, answers (list), optional passage / ctxs.")],
    corpus: Annotated[
        str | None,
        typer.Option(help="Retrieve passages from this corpus (.jsonl/.parquet, folder or index)."),
    ] = None,
    retrieve: Annotated[
        int | None, typer.Option(help="Passages per question from --corpus (default 3); 0 = closed book.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate the first N rows only.")] = None,
    style: Annotated[
        str, typer.Option(help="plain: one user turn; smart: SMART transcript (passages as retriever turns).")
    ] = "plain",
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget per answer.")] = 32,
    batch_size: Annotated[int, typer.Option(help="Rows per generate() call (model folders).")] = 8,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default evals/MODEL--DATA).")
    ] = None,
) -> None:
    """Exact match and F1 (SQuAD normalisation); writes predictions.jsonl and summary.json."""
    from train.errors import TrainError
    from train.eval import run_qa_eval

    if style not in ("plain", "smart"):
        raise TrainError(f"--style must be plain or smart, got {style!r}")
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
    _console.print(
        f"{summary['rows']} rows: EM {100 * summary['exact_match']:.1f} F1 {100 * summary['f1']:.1f} "
        f"({summary['passages']}, {summary['seconds']:.1f}s) -> {summary['predictions']}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    print(json.dumps(summary))
