"""QA evaluation data, prompts and metrics (SQuAD v1.1 exact match and token F1).

Prompts are chat message lists rendered with the model's chat template — the project's plain template for
base models — i.e. the same format the exports train on:

* ``plain``: one user turn, ``[id] title\\ntext`` passages (if any), then ``Question: ...``; the answer is
  the assistant turn (``### Assistant``).
* ``smart``: the SMART long-trajectory layout: the question as the user turn, each passage as a ``tool``
  turn headed ``Knowledge Retriever``, and the generation prompt ``### Response Generator``. The model
  answers in the Response Generator's JSON; its ``answer`` field is scored. (The Intent Reconstructor and
  Fact Locator segments are skipped: passages come from the data or ``--corpus``, not from the model's
  own queries.)
* ``atm``: ATM's generator role (``roles/atm.py``): its system instructions, then the documents and the
  question, exactly as the ATM graph prompts it and as its ``sft`` / ``mito`` exports train it.

A prediction whose first line starts a JSON object with an ``answer`` key is scored on that key, otherwise
on its first non-empty line (code fences skipped); generation of a row stops as soon as that answer is
fixed (:func:`answer_complete`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from synth import metrics
from synth.qa import RESPONDER_HEADER, RETRIEVER_HEADER, PassageShapeError, passage_text, row_passages
from train.data import numbered_jsonl
from train.errors import TrainError

Style = Literal["plain", "smart", "atm"]


# -- metrics ---------------------------------------------------------------------------------------------
def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer (synth.metrics)."""
    return float(metrics.exact_match(prediction, answers))


def f1_score(prediction: str, answers: Sequence[str]) -> float:
    """Token F1 against the best-matching gold answer (SQuAD v1.1)."""
    return metrics.best_f1(prediction, answers)


def _first_line(text: str) -> tuple[int, int, bool] | None:
    """(start, end, ended) of the first non-empty line that is not a code fence (```), or None."""
    offset = 0
    for line in text.splitlines(keepends=True):
        content = line.strip()
        if content and not content.startswith("```"):
            begin = offset + line.index(content[0])
            return begin, begin + len(content), line.endswith(("\n", "\r"))
        offset += len(line)
    return None


def _json_answer(text: str, line: tuple[int, int, bool]) -> tuple[bool, str | None]:
    """(decoded, answer) of a JSON value that starts on the first line; answer None without one."""
    brace = text.find("{", line[0])
    if brace < 0 or brace >= line[1]:
        return False, None
    try:
        parsed, _ = json.JSONDecoder().raw_decode(text[brace:])
    except json.JSONDecodeError:
        return False, None
    if isinstance(parsed, dict) and "answer" in parsed:
        return True, str(parsed["answer"]).strip()
    return True, None


def extract_answer(text: str) -> str:
    """The answer in a generation: the ``answer`` of a JSON object that starts on the first line (it
    may span lines), else that first line. Blank lines and code fences before it are skipped."""
    line = _first_line(text)
    if line is None:
        return ""
    _, answer = _json_answer(text, line)
    return answer if answer is not None else text[line[0] : line[1]]


def answer_complete(text: str) -> bool:
    """True once more generated text cannot change :func:`extract_answer`: the first line has ended
    (and any JSON object starting on it is complete), or that JSON object has its ``answer``. Evaluation
    stops generating a row here, so a model that rambles after its answer costs no extra tokens."""
    line = _first_line(text)
    if line is None:
        return False
    decoded, answer = _json_answer(text, line)
    if answer is not None:
        return True
    starts_json = 0 <= text.find("{", line[0]) < line[1]
    return line[2] and (decoded or not starts_json)


# -- data ------------------------------------------------------------------------------------------------
def _passages(row: dict[str, Any], where: str) -> list[dict[str, str]]:
    """The row's passages (:func:`synth.qa.row_passages`) numbered from 1 unless they carry an id."""
    try:
        found = row_passages(row, where=where)
    except PassageShapeError as exc:
        raise TrainError(str(exc)) from None
    out: list[dict[str, str]] = []
    for number, passage in enumerate(found, 1):
        pid = passage.id if passage.is_object and passage.id is not None else str(number)
        title = passage.title or (str(row.get("title") or "") if passage.field == "passage" else "")
        out.append({"id": pid, "title": title, "text": passage.text})
    return out


def load_qa(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """QA rows from .jsonl: ``question``, ``answers`` (list or string), optional ``passage`` (a string or
    an object with ``text``, ``title``, ``id``) and/or ``ctxs`` (strings or such objects). ``id`` defaults
    to the line number (``id_given`` says which)."""
    if not path.is_file():
        raise TrainError(f"QA file {path} does not exist; pass a .jsonl file with question/answers rows")
    rows: list[dict[str, Any]] = []
    for number, row in numbered_jsonl(path):
        where = f"{path}:{number}"
        question = row.get("question") if isinstance(row, dict) else None
        answers = row.get("answers") if isinstance(row, dict) else None
        answers = [answers] if isinstance(answers, str) else answers
        if not isinstance(question, str) or not question.strip():
            raise TrainError(f"{where}: missing field 'question' (a non-empty string)")
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise TrainError(f"{where}: field 'answers' must be a non-empty list of strings")
        rows.append(
            {
                "id": str(row.get("id", number)),
                "id_given": "id" in row,
                "question": question.strip(),
                "answers": answers,
                "passages": _passages(row, where),
            }
        )
        if limit and len(rows) >= limit:
            break
    if not rows:
        raise TrainError(f"QA file {path} has no rows")
    return rows


# -- prompts ---------------------------------------------------------------------------------------------
def build_messages(
    question: str, passages: Sequence[dict[str, str]], style: Style
) -> tuple[list[dict[str, Any]], str | None]:
    """The chat messages of one QA prompt and the generation header (None: ``### Assistant``)."""
    if style == "smart":
        messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
        messages += [{"role": "tool", "name": RETRIEVER_HEADER, "content": passage_text(p)} for p in passages]
        return messages, RESPONDER_HEADER
    if style == "atm":
        from roles.atm import GENERATOR, generator_inputs

        system, user = GENERATOR.render(**generator_inputs(question, list(passages)))
        return [{"role": "system", "content": system}, {"role": "user", "content": user}], None
    context = "\n\n".join(passage_text(p) for p in passages)
    content = (
        f"{context}\n\nQuestion: {question}\nAnswer briefly."
        if context
        else f"Question: {question}\nAnswer briefly."
    )
    return [{"role": "user", "content": content}], None
