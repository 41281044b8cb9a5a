"""Held-out questions that are really held out: no shared id and no shared question text.

A model tuned on a question and evaluated on the same question (re-worded only by case, punctuation or
articles — NQ has many near-duplicates) measures memory, not learning. Two rows are the *same question*
when their ids are equal (both given in the data) or their questions are equal after SQuAD normalisation
(:func:`synth.metrics.normalize_answer`: lower case, no punctuation, no articles, single spaces).

* :func:`overlaps` lists the clashes between two row lists (few-shot examples vs the eval set, training
  questions vs held-out ones);
* :func:`split_heldout` splits QA rows into train / eval (and optionally dev) sets, deterministically
  from a seed, keeping every group of same-question rows on one side, and checks the result.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synth.metrics import normalize_answer
from train.data import numbered_jsonl
from train.errors import TrainError


def question_key(question: str) -> str:
    """The normalised question text that two rows must not share across a split."""
    return normalize_answer(question)


def overlaps(rows: Sequence[dict[str, Any]], others: Sequence[dict[str, Any]]) -> list[str]:
    """One line per row of ``rows`` that is also in ``others`` (same given id or same normalised question)."""
    ids = {str(r["id"]): r for r in others if _has_id(r)}
    texts = {question_key(r["question"]): r for r in others}
    found: list[str] = []
    for row in rows:
        if _has_id(row) and str(row["id"]) in ids:
            found.append(f"id {row['id']!r}")
        elif question_key(row["question"]) in texts:
            other = texts[question_key(row["question"])]
            ids_of = f"ids {row.get('id')}, {other.get('id')}"
            found.append(f"question {row['question']!r} = {other['question']!r} ({ids_of})")
    return found


def split_heldout(
    rows: Sequence[dict[str, Any]], eval_size: int, *, dev_size: int = 0, seed: int = 0
) -> dict[str, list[dict[str, Any]]]:
    """``{"train", "dev", "eval"}`` row lists with no id or normalised question shared between them.

    Rows are grouped by normalised question (and id), the groups shuffled with ``seed``, and whole groups
    dealt to eval, then dev, then train; so ``eval_size`` / ``dev_size`` count rows, met exactly unless a
    group would overshoot (then the next fitting group is taken).
    """
    if eval_size < 1 or dev_size < 0:
        raise TrainError(f"eval_size must be >= 1 and dev_size >= 0 (got {eval_size}, {dev_size})")
    groups = _groups(rows)
    random.Random(seed).shuffle(groups)
    sides: dict[str, list[dict[str, Any]]] = {"eval": [], "dev": [], "train": []}
    wanted = {"eval": eval_size, "dev": dev_size}
    for group in groups:
        side = next((s for s in ("eval", "dev") if len(sides[s]) + len(group) <= wanted[s]), "train")
        sides[side].extend(group)
    if len(sides["eval"]) < eval_size or not sides["train"]:
        raise TrainError(
            f"cannot hold out {eval_size} eval (+ {dev_size} dev) rows from {len(rows)} rows "
            f"({len(groups)} distinct questions) and keep training rows; ask for fewer"
        )
    for a, b in (("train", "eval"), ("train", "dev"), ("dev", "eval")):
        clash = overlaps(sides[a], sides[b])
        if clash:  # pragma: no cover - the grouping makes this impossible; kept as the contract's check
            raise TrainError(f"split overlap between {a} and {b}: {clash[:3]}")
    return sides


def _groups(rows: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows joined into groups that share an id or a normalised question (union-find over both keys)."""
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, row in enumerate(rows):
        keys = [f"q:{question_key(row['question'])}"]
        if _has_id(row):
            keys.append(f"id:{row['id']}")
        for key in keys:
            if key in first:
                parent[find(i)] = find(first[key])
            else:
                first[key] = i
    groups: dict[int, list[dict[str, Any]]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(find(i), []).append(row)
    return list(groups.values())


def write_split(sides: dict[str, list[dict[str, Any]]], out: Path) -> dict[str, str]:
    """``OUT/train.jsonl``, ``dev.jsonl`` (if any) and ``eval.jsonl``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for side, side_rows in sides.items():
        if not side_rows and side == "dev":
            continue
        path = out / f"{side}.jsonl"
        lines = (json.dumps(_public(r), ensure_ascii=False) + "\n" for r in side_rows)
        path.write_text("".join(lines), encoding="utf-8")
        written[side] = str(path)
    return written


def _has_id(row: dict[str, Any]) -> bool:
    """An id from the data (not a line number that load_qa made up)."""
    return "id" in row and bool(row.get("id_given", True))


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Raw QA rows (kept as they are, for writing back) from .jsonl; each needs a ``question`` string."""
    if not path.is_file():
        raise TrainError(f"{path} does not exist; pass a .jsonl file of QA rows")
    rows: list[dict[str, Any]] = []
    for number, row in numbered_jsonl(path):
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("question"), str)
            or not row["question"].strip()
        ):
            raise TrainError(f"{path}:{number}: missing field 'question' (a non-empty string)")
        rows.append(row)
    return rows


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "id_given"}
