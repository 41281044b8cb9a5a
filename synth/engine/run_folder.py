"""Which run folder a ``synth run`` writes, and whether it may: the configuration and the inputs it was
made from must match, unless ``--new`` (the next free ``NAME-2``), ``--force`` (start over) or, for an
input, ``--add-input``. A folder without records has nothing to protect.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from synth.engine.inputs import recorded_inputs, same_input
from synth.errors import RunFolderError

if TYPE_CHECKING:
    from synth.engine.session import RunRequest
    from synth.graph import SynthGraph


def open_folder(
    request: RunRequest, graph: SynthGraph, fingerprint: str, source: dict[str, str]
) -> tuple[Path, list[dict[str, str]], bool]:
    """The folder to write, the input files it is then made from, and whether its records must go.

    Refuses a changed configuration, or an input the folder was not made from, unless ``--force``
    (reset), ``--new`` (the next free NAME-2, NAME-3...) or, for the input, ``--add-input``."""
    folder = request.out
    if request.new:
        n = 1
        while _conflict(folder, fingerprint, source, request.add_input) is not None:
            n += 1
            folder = request.out.with_name(f"{request.out.name}-{n}")
    reason = _conflict(folder, fingerprint, source, request.add_input)
    if reason is not None and not request.force:
        raise RunFolderError(reason)
    if reason is not None:
        return folder, [source], True
    inputs = recorded_inputs(folder)
    match = next((n for n, i in enumerate(inputs) if same_input(i, source)), None)
    if match is None:
        inputs.append(source)  # a new folder, or --add-input
    elif same_input({"path": inputs[match]["path"]}, source):
        inputs[match] = source  # the same file, maybe edited: its current hash
    return folder, inputs, False


def _conflict(folder: Path, fingerprint: str, source: dict[str, str], add_input: bool) -> str | None:
    """Why ``folder`` may not take this run, or None. A folder without records has nothing to protect
    (a run that stopped on a bad option value before its first row: the corrected command just runs)."""
    existing = _fingerprint_of(folder)
    if existing is None or not _has_records(folder):
        return None
    if existing != fingerprint:
        return (
            f"{folder} holds a run with another configuration (graph, options, models or templates changed). "
            "Use --new to write to a new folder, --force to discard its records, or another --out."
        )
    recorded = recorded_inputs(folder)
    if add_input or not recorded or any(same_input(i, source) for i in recorded):
        return None
    made_from = ", ".join(i["path"] for i in recorded)
    return (
        f"{folder} was made from {made_from} (its config.yaml records each input and its sha256); "
        f"--input {source['path']} is a different file. Use --add-input to add its rows to this run, --new "
        "to write a new folder, --force to discard the folder's records, or another --out."
    )


def _has_records(folder: Path) -> bool:
    path = folder / "records.sqlite"
    if not path.exists():
        return False
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT 1 FROM records LIMIT 1").fetchone() is not None
    except sqlite3.DatabaseError:  # unreadable: treat as holding records, so nothing is reset silently
        return True
    finally:
        db.close()


def _fingerprint_of(folder: Path) -> str | None:
    path = folder / "fingerprint"
    return path.read_text().strip() if path.exists() else None
