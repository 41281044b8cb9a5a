"""pyproject.toml declares what the installed packages import, and nothing they do not.

A third-party module imported by ``synth/``, ``roles/``, ``graphs/`` or ``train/`` that only arrives as
someone else's dependency breaks the day that package drops it; a declared one that nothing imports costs
every install for nothing. The ``dev`` extra is the test and lint tools, so only its imports count.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

from synth.extras import SEPARATE_INSTALL

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("synth", "roles", "graphs", "train")

#: Import names whose distribution is not the import name with ``_`` -> ``-`` (longest prefix wins).
DISTRIBUTION_OF = {
    "yaml": "pyyaml",
    "langgraph.checkpoint.sqlite": "langgraph-checkpoint-sqlite",
}

#: Declared distributions that no module imports by name, and why they are needed all the same.
USED_WITHOUT_IMPORT = {
    "gguf": "transformers reads the embedded model's GGUF file with it (synth/models/local/convert.py)",
    "safetensors": "the converted model folder is written as safetensors (save_pretrained)",
    "apache-tvm-ffi": "xgrammar's runtime; xgrammar itself is installed with --no-deps",
    "requests": "TRL 1.12 (the ppo extra) imports it without declaring it",
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.-]+", requirement)
    assert match, requirement
    return normalize(match.group())


def declared() -> dict[str, str]:
    """Distribution -> where it is declared (``dependencies`` or ``extra NAME``), dev tools excluded."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    found = {requirement_name(r): "dependencies" for r in project["dependencies"]}
    for extra, requirements in project["optional-dependencies"].items():
        if extra != "dev":
            for requirement in requirements:
                found.setdefault(requirement_name(requirement), f"extra {extra}")
    return found


def distribution(module: str) -> str:
    for prefix in sorted(DISTRIBUTION_OF, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return DISTRIBUTION_OF[prefix]
    return normalize(module.partition(".")[0])


def imported() -> dict[str, str]:
    """Distribution -> the first ``file:line`` that imports it (absolute imports of third-party modules)."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.partition(".")[0]
                    if top in PACKAGES or top in sys.stdlib_module_names or top in SEPARATE_INSTALL:
                        continue
                    where = f"{path.relative_to(REPO)}:{node.lineno}"
                    found.setdefault(distribution(module), where)
    return found


def test_every_imported_distribution_is_declared() -> None:
    missing = {dist: where for dist, where in imported().items() if dist not in declared()}
    assert not missing, (
        "imported but not declared in pyproject.toml (add each to [project] dependencies, or to the extra "
        "whose command needs it; fix DISTRIBUTION_OF here if the distribution name differs): "
        + ", ".join(f"{dist} ({where})" for dist, where in sorted(missing.items()))
    )


def test_every_declared_distribution_is_imported() -> None:
    used = imported()
    needed = used.keys() | USED_WITHOUT_IMPORT.keys()
    unused = {dist: where for dist, where in declared().items() if dist not in needed}
    assert not unused, (
        "declared in pyproject.toml but imported nowhere in synth/ roles/ graphs/ train/ (remove it, or "
        "add it to USED_WITHOUT_IMPORT here with the reason): "
        + ", ".join(f"{dist} ({where})" for dist, where in sorted(unused.items()))
    )
    stale = sorted(dist for dist in USED_WITHOUT_IMPORT if dist not in declared())
    assert not stale, f"USED_WITHOUT_IMPORT names undeclared distributions: {stale}"


def test_the_scan_sees_imports_inside_functions_and_submodules() -> None:
    """The scan is what the two tests above rest on: lazy imports and namespace packages count."""
    used = imported()
    assert used["trl"].startswith("train/")  # imported inside functions only
    assert used["langgraph-checkpoint-sqlite"].startswith("synth/engine/checkpoints.py:")  # not "langgraph"
    assert "pyyaml" in used and "yaml" not in used
