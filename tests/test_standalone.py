"""A fresh clone stands alone: no tracked file points outside the repository, and the tests that read data
pass from a clone placed where nothing sits beside it.

The guard scans every file git would put in a clone (tracked, plus new files not ignored, so a forgotten
``git add`` fails here before it fails in CI) for references to a sibling data folder and for absolute
paths of a developer machine. The patterns are built from parts so this file does not trip them itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO

SIBLING = "sha" + "red"  # the folder beside the repository that development machines had and clones lack
CHECKS: dict[str, re.Pattern[str]] = {
    # ../<sibling> or ..\<sibling>, in prose, shell commands and string literals
    "a path into ../" + SIBLING: re.compile(r"\.\.[/\\]" + SIBLING + r"(?![\w-])"),
    # pathlib joins onto the sibling: REPO.parent / "<sibling>", parents[2] / ".." / "<sibling>"
    "a Path joined onto the " + SIBLING + " folder": re.compile(r"/\s*[\"']" + SIBLING + r"[\"']"),
    # os.path.join("..", "<sibling>")
    "os.path.join onto the " + SIBLING + " folder": re.compile(
        r"[\"']\.\.[\"']\s*,\s*[\"']" + SIBLING + r"[\"']"
    ),
    # a developer machine's folders (a URL path such as https://host/work/ is preceded by a name, not matched)
    "an absolute path of a developer machine": re.compile(
        r"(?<![\w.~/$-])(?:/(?:work|root)(?![\w.-])|/(?:home|Users)/[\w.-]+|[A-Za-z]:\\{1,2}Users\\{1,2})"
    ),
}


def clone_files(repo: Path) -> list[str]:
    """The files a clone of ``repo`` gets (tracked) plus new ones not ignored; fails outside a git tree."""
    listing = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
    )
    assert listing.returncode == 0, f"the guard needs a git work tree at {repo}: {listing.stderr.strip()}"
    return sorted({name for name in listing.stdout.split("\0") if name})


def offending_lines(repo: Path) -> list[str]:
    """``path:line: what: the line`` for every reference outside the repository in ``repo``'s files."""
    found = []
    for name in clone_files(repo):
        path = repo / name
        if not path.is_file():  # deleted in the work tree, not yet committed
            continue
        raw = path.read_bytes()
        if b"\0" in raw:  # binary (pictures): no paths to read
            continue
        for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
            for what, pattern in CHECKS.items():
                if pattern.search(line):
                    found.append(f"{name}:{number}: {what}: {line.strip()[:160]}")
    return found


def test_no_tracked_file_refers_outside_the_repository() -> None:
    found = offending_lines(REPO)
    assert not found, (
        "these lines point outside the repository; a fresh clone has none of it. Put the data in "
        "examples/data (with its SOURCES.md) and use a path relative to the repo:\n" + "\n".join(found)
    )


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
    )


@pytest.mark.parametrize(
    "line",
    [
        "python bench/x.py --data ../" + SIBLING + "/data/corpus.jsonl",
        'DATA = Path(__file__).parents[1] / ".." / "' + SIBLING + '" / "data"',
        'DATA = REPO.parent / "' + SIBLING + '" / "data"',
        'DATA = os.path.join("..", "' + SIBLING + '", "data")',
        "model at /" + "root/.cache/synth",
        "cd /" + "work/main && make test",
        "see /" + "home/alice/notes.txt",
        "see /" + "Users/bob/notes.txt",
        'open("C:\\\\' + 'Users\\\\bob\\\\x")',
    ],
)
def test_the_guard_fails_on_purpose_on_a_reference_outside(tmp_path: Path, line: str) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "ok.md").write_text(
        "The cache is ~/.cache/synth; see https://example.org/work/ and /tmp/seeds.jsonl.\n"
        "shared storage at the same path; the " + SIBLING + " NQ data; runs/" + SIBLING + "-x\n"
    )
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "clean")
    assert offending_lines(repo) == []  # the clean file passes: the patterns do not fire on look-alikes
    (repo / "docs.md").write_text("intro\n" + line + "\n")
    found = offending_lines(repo)  # untracked yet: still a failure
    assert len(found) == 1 and found[0].startswith("docs.md:2: "), found
    git(repo, "add", "docs.md")
    assert offending_lines(repo) == found


def clone_work_tree(dest: Path) -> Path:
    """``git clone`` of this repository into ``dest``, plus the uncommitted edits and the new files that
    are not ignored: what the clone would be after ``git add -A && git commit``, so `make test` checks the
    change under way, not only the last commit. Ignored files (.venv, runs/, caches) never travel."""
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)
    diff = subprocess.run(
        ["git", "-C", str(REPO), "diff", "HEAD", "--binary"], check=True, capture_output=True
    ).stdout
    if diff:
        subprocess.run(["git", "-C", str(dest), "apply", "--whitespace=nowarn"], input=diff, check=True)
    new = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for name in filter(None, new.split("\0")):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / name, dest / name)
    return dest


def test_the_guard_catches_a_reference_added_to_this_repository(tmp_path: Path) -> None:
    """On a clone of this repository: clean as it stands, failing once a sibling reference is added."""
    clone = clone_work_tree(tmp_path / "clone")
    assert offending_lines(clone) == []
    paths = clone / "tests" / "paths.py"
    text = paths.read_text()
    assert 'DATA = REPO / "examples" / "data"' in text
    paths.write_text(text.replace('REPO / "examples"', 'REPO.parent / "' + SIBLING + '"'))
    found = offending_lines(clone)
    assert len(found) == 1 and found[0].startswith("tests/paths.py:"), found


def data_dependent_tests(root: Path) -> list[str]:
    """Test files that read the bundled data (they import ``DATA``): what a missing folder would break."""
    reads_data = re.compile(r"^from tests\.paths import .*\bDATA\b", re.MULTILINE)
    return sorted(
        str(path.relative_to(root))
        for path in (root / "tests").rglob("test_*.py")
        if path.name != Path(__file__).name and reads_data.search(path.read_text(encoding="utf-8"))
    )


@pytest.mark.slow
def test_data_dependent_tests_pass_from_a_clone_with_nothing_beside_it(tmp_path: Path) -> None:
    """A clone of the work tree (committed files plus uncommitted edits to them) in an empty folder, with
    no sibling data folder above it, runs every data-reading test from an unrelated cwd (~80 s)."""
    clone, elsewhere = clone_work_tree(tmp_path / "clone"), tmp_path / "elsewhere"
    for folder in (clone, *clone.parents):
        assert not (folder / SIBLING).exists(), f"{folder / SIBLING} exists: the clone would not stand alone"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(clone)}
    where = subprocess.run(
        [sys.executable, "-c", "import synth, tests.paths as p; print(synth.__file__); print(p.DATA)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(Path(p).is_relative_to(clone) for p in where), where  # the clone's code, not this tree's
    files = data_dependent_tests(clone)
    expected = {
        "tests/test_retrieval.py",
        "tests/test_filters.py",
        "tests/integration/test_smart_embedded.py",
        "tests/integration/test_atm_embedded.py",
    }
    assert expected <= set(files), files
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rfE",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(clone),
            "-c",
            str(clone / "pyproject.toml"),
            *(str(clone / f) for f in files),
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    summary = [line for line in run.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    assert run.returncode == 0, "\n".join(summary) + "\n" + run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout, run.stdout[-2000:]
