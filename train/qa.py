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

A prediction that is a JSON object with an ``answer`` key is scored on that key, otherwise on its first
non-empty line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from synth import metrics
from train.errors import TrainError

Style = Literal["plain", "smart", "atm"]
RETRIEVER_HEADER = "Knowledge Retriever"
RESPONDER_HEADER = "Response Generator"


# -- metrics ---------------------------------------------------------------------------------------------
def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer (synth.metrics)."""
    return float(metrics.exact_match(prediction, answers))


def f1_score(prediction: str, answers: Sequence[str]) -> float:
    """Token F1 against the best-matching gold answer (SQuAD v1.1)."""
    return metrics.best_f1(prediction, answers)


def extract_answer(text: str) -> str:
    """The answer in a generation: a JSON object's ``answer``, else the first non-empty line."""
    stripped = text.strip()
    start = stripped.find("{")
    if start >= 0:
        try:
            parsed, _ = json.JSONDecoder().raw_decode(stripped[start:])
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and "answer" in parsed:
            return str(parsed["answer"]).strip()
    lines = [line.strip() for line in stripped.splitlines() if line.strip()]
    return lines[0] if lines else ""


# -- data ------------------------------------------------------------------------------------------------
def _passages(row: dict[str, Any], where: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    if isinstance(row.get("passage"), str) and row["passage"].strip():
        out.append({"id": "1", "title": str(row.get("title") or ""), "text": row["passage"]})
    for i, ctx in enumerate(row.get("ctxs") or [], len(out) + 1):
        if isinstance(ctx, str):
            out.append({"id": str(i), "title": "", "text": ctx})
        elif isinstance(ctx, dict) and ctx.get("text"):
            out.append(
                {"id": str(ctx.get("id", i)), "title": str(ctx.get("title") or ""), "text": str(ctx["text"])}
            )
        else:
            raise TrainError(f"{where}: ctxs[{i - 1}] must be a string or an object with 'text'")
    return out


def load_qa(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """QA rows from .jsonl: ``question``, ``answers`` (list or string), optional ``passage``/``ctxs``."""
    if not path.is_file():
        raise TrainError(f"QA file {path} does not exist; pass a .jsonl file with question/answers rows")
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainError(f"{where} is not valid JSON: {exc.msg}") from None
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
def passage_text(passage: dict[str, str]) -> str:
    """``[id] title`` then the text: how SMART exports show a retrieved passage."""
    head = f"[{passage['id']}] {passage['title']}" if passage.get("title") else f"[{passage['id']}]"
    return f"{head}\n{passage['text']}"


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
