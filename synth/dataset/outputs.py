"""The one rule for folders a command writes and replaces (``synth export --out``, ``synth report --out``).

A command may replace only what it wrote itself: a folder that is missing or empty, or an earlier output
of the same command (recognised by a mark in its main file and by holding nothing but the files that
command writes). Anything else - a folder of notes, a project, the run folder or a parent of it - is
refused with the folder named and what to do, and is never deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from synth.errors import RunFolderError


@dataclass(frozen=True)
class OutputKind:
    """What a command writes: its name, the file carrying one of ``marks``, and which entries it may
    replace (older versions' marks included, so their outputs are still recognised)."""

    name: str  # "synth export", "synth report"
    main_file: str
    marks: tuple[str, ...]
    owns: Callable[[Path], bool]  # an entry (file or folder) of an earlier output of this kind


def is_output_of(kind: OutputKind, target: Path) -> bool:
    """Whether ``target`` is an earlier output of ``kind``: its main file carries the mark and every entry
    is one the command writes."""
    main = target / kind.main_file
    if not main.is_file():
        return False
    text = main.read_text(encoding="utf-8", errors="replace")
    if not any(mark in text for mark in kind.marks):
        return False
    return all(kind.owns(entry) for entry in target.iterdir())


def check_output_folder(
    kind: OutputKind, target: Path, run_folder: Path, *, overwrite: bool | None = None
) -> None:
    """Refuse ``target`` unless it is missing, empty, or an earlier output of ``kind``.

    ``overwrite``: None when replacing an earlier output needs no flag (a report is regenerated), else
    whether ``--overwrite`` was given (an export is replaced only when asked).
    """
    resolved, run = target.resolve(), run_folder.resolve()
    if run.is_relative_to(resolved):
        raise RunFolderError(
            f"--out {target} holds the run folder itself ({run_folder}); pass a new or empty folder for "
            f"the {kind.name} output."
        )
    if resolved.is_relative_to(run) and resolved.parent == run and target.name in _RUN_FILES:
        raise RunFolderError(f"--out {target} is part of the run folder; pass another folder.")
    if not target.exists():
        return
    if not target.is_dir():
        raise RunFolderError(f"--out {target} is a file, not a folder; pass a new or empty folder.")
    if not any(target.iterdir()):
        return
    if not is_output_of(kind, target):
        raise RunFolderError(
            f"--out {target} exists and is not a {kind.name} folder (it holds other files), so it is left "
            f"untouched; choose a new or empty folder (or remove {target} yourself)."
        )
    if overwrite is False:
        raise RunFolderError(
            f"--out {target} holds an earlier {kind.name}; pass --overwrite to replace it, "
            "or choose a new or empty folder."
        )


#: Entries of a run folder that no output may take the place of.
_RUN_FILES = frozenset(
    {
        "records.sqlite",
        "calls.sqlite",
        "checkpoints.sqlite",
        "config.yaml",
        "fingerprint",
        "lock",
        "log.jsonl",
    }
)
