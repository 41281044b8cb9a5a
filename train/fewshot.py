"""Few-shot prompts for ``synth eval qa --few-shot K --few-shot-from FILE``: the honest baseline.

A base model that never saw the answer format scores ~0 exact match mostly because it rambles; a trained
model that merely learned the format would then look like a big data effect. K worked examples in the
*same* prompt format (and with the same kind of passages: retrieved from the same corpus, the rows' own,
or none) teach the base model the format without any training, so "trained beats few-shot" measures
what the data added.

Each example is the prompt the model sees for a training question, followed by the answer turn the
trained model is taught to produce (``plain``/``atm``: the first gold answer; ``smart``: the Response
Generator's JSON ``{"answer": ...}``), then the evaluated question's prompt. Examples whose id or
normalised question appears in the evaluation set are refused (:mod:`train.heldout`), as are files with
fewer than K usable rows; the first K usable rows are used, in file order, for every question.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synth.qa import RESPONDER_HEADER
from train.errors import TrainError
from train.heldout import overlaps
from train.qa import Style, build_messages, load_qa


def select_examples(
    path: Path, k: int, eval_rows: Sequence[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The first ``k`` rows of ``path`` not in ``eval_rows``, and a line per refused row."""
    if k < 1:
        raise TrainError(f"--few-shot must be >= 1 (got {k})")
    chosen: list[dict[str, Any]] = []
    refused: list[str] = []
    for row in load_qa(path):
        clash = overlaps([row], eval_rows)
        if clash:
            refused.append(f"{path}: {clash[0]} is also in the evaluation set")
        else:
            chosen.append(row)
        if len(chosen) == k:
            return chosen, refused
    raise TrainError(
        f"--few-shot {k} needs {k} rows of {path} that are not evaluation questions; found {len(chosen)} "
        f"({len(refused)} refused as evaluation questions). Point --few-shot-from at training questions"
    )


def answer_turn(example: dict[str, Any], style: Style) -> dict[str, Any]:
    """The assistant turn a trained model produces for ``example``, in ``style``."""
    answer = example["answers"][0]
    if style == "smart":
        return {"role": "assistant", "name": RESPONDER_HEADER, "content": json.dumps({"answer": answer})}
    return {"role": "assistant", "content": answer}


def few_shot_messages(
    question: str, passages: Sequence[dict[str, str]], examples: Sequence[dict[str, Any]], style: Style
) -> tuple[list[dict[str, Any]], str | None]:
    """The prompt for ``question`` preceded by the worked ``examples`` (each with its ``passages``)."""
    messages: list[dict[str, Any]] = []
    for example in examples:
        shot, _ = build_messages(example["question"], example["passages"], style)
        if style == "atm" and messages:
            shot = [m for m in shot if m["role"] != "system"]  # the instructions once, at the top
        messages += [*shot, answer_turn(example, style)]
    final, header = build_messages(question, passages, style)
    if style == "atm":
        final = [m for m in final if m["role"] != "system"]
    return [*messages, *final], header
