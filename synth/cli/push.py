"""``synth push DIR --repo USER/NAME``: publish an export folder as a Hugging Face dataset repo.

The token is read from ``HF_TOKEN`` or the ``hf auth login`` cache only: a ``--token`` flag would land in
shell history, so there is none. ``--dry-run`` needs no token and sends nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

_console = Console(stderr=True)


def push_command(
    folder: Annotated[Path, typer.Argument(help="An export folder (made by `synth export`).")],
    repo: Annotated[str, typer.Option("--repo", "-r", help="Dataset repo id USER/NAME (or ORG/NAME).")],
    private: Annotated[
        bool, typer.Option(help="Create the repo private (an existing repo keeps its visibility).")
    ] = False,
    revision: Annotated[
        str | None, typer.Option(help="Branch to push to (created from main if missing; default main).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the exact files and the card; send nothing.")
    ] = False,
    commit_message: Annotated[
        str | None, typer.Option("--commit-message", "-m", help="Default: 'synth push: TITLE, N rows'.")
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(help="Hub URL (default $HF_ENDPOINT or https://huggingface.co)."),
    ] = None,
) -> None:
    """Push an export folder (its card and data files) to a dataset repo on the Hugging Face Hub.

    Token: HF_TOKEN or the `hf auth login` cache. Re-pushing unchanged files makes no new commit."""
    from synth.dataset.hub import check_no_secrets, plan_push, push, resolve_token, secret_values

    plan = plan_push(folder, repo, revision=revision, private=private, commit_message=commit_message)
    if dry_run:
        check_no_secrets(plan, secret_values(os.environ))
        print(plan.describe())
        return
    token = resolve_token()
    check_no_secrets(plan, secret_values(os.environ, token))
    _console.print(
        f"pushing {len(plan.files)} files from {plan.folder} to dataset {plan.repo_id}@{plan.revision}"
    )
    result = push(plan, token, endpoint=endpoint)
    for warning in result.warnings:
        _console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    _console.print(result.describe(), soft_wrap=True)
