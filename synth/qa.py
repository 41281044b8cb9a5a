"""Question-answering rows and transcripts, shared by the QA graphs (SMART, ATM) and ``train/``.

* :func:`gold_answers`: a row's gold ``answers`` (a string or a list), stripped, blanks dropped;
* :func:`row_passages`: the passages a row brings, ``passage`` (a string with sibling ``title`` /
  ``passage_id`` fields, or an object ``{id?, title?, text}``) then ``ctxs`` (strings or such objects,
  with an optional ``hasanswer``), as :class:`RowPassage` values each caller gives its own ids;
* :func:`passage_text`: how a passage reads in a transcript or prompt (``[id] title`` then the text);
* :data:`HEADERS`: the SMART segment headers (the chat message ``name`` of each role's turns), read by
  SMART's exports and by QA evaluation in the SMART layout.

Exact match and token F1 live in :mod:`synth.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

#: Section headers of each SMART role's segment in the exported transcripts (the chat message ``name``).
HEADERS = {
    "intent_reconstructor": "Intent Reconstructor",
    "fact_locator": "Fact Locator",
    "response_generator": "Response Generator",
}
#: Header of the retrieved-passage turns (not trained on: they are ``tool`` messages, not assistant).
RETRIEVER_HEADER = "Knowledge Retriever"
#: Header of the answer turn: the generation prompt of QA evaluation in the SMART layout.
RESPONDER_HEADER = HEADERS["response_generator"]


class Document(BaseModel):
    """A passage as a graph's result shows it: id, title, text (typed reading of results)."""

    model_config = ConfigDict(extra="forbid")
    id: str
    title: str
    text: str


class PassageShapeError(ValueError):
    """A row's ``passage`` or ``ctxs`` entry is neither text nor an object with ``text``."""


@dataclass(frozen=True)
class RowPassage:
    """One passage as the row gives it; ``id`` and ``title`` are None / "" when the row gives none."""

    field: Literal["passage", "ctxs"]
    #: Position among the row's kept ``ctxs`` (0 for ``passage``).
    number: int
    text: str
    id: str | None
    title: str
    #: ``hasanswer`` of a ``ctxs`` object, when the row flags it.
    hasanswer: bool | None = None
    #: Whether the row gave it as an object (``{text, ...}``) rather than as a plain string.
    is_object: bool = False


def gold_answers(row: Mapping[str, Any]) -> list[str]:
    """The row's gold ``answers`` (a string counts as one), stripped; blanks and non-strings dropped."""
    answers = row.get("answers") or []
    answers = [answers] if isinstance(answers, str) else answers
    return [a.strip() for a in answers if isinstance(a, str) and a.strip()]


def row_passages(row: Mapping[str, Any], *, where: str | None = None) -> list[RowPassage]:
    """``passage`` then ``ctxs``; entries with blank text are skipped. With ``where`` (``file:line``) an
    entry of the wrong shape is a :class:`PassageShapeError` that names it; without, it is skipped."""
    found: list[RowPassage] = []
    passage = row.get("passage")
    if isinstance(passage, str):
        if passage.strip():
            pid, title = _id(row.get("passage_id")), _text(row.get("title"))
            found.append(RowPassage("passage", 0, passage, pid, title))
    elif isinstance(passage, Mapping) and isinstance(passage.get("text"), str):
        if passage["text"].strip():
            pid, title = _id(passage.get("id")), _text(passage.get("title"))
            found.append(RowPassage("passage", 0, passage["text"], pid, title, is_object=True))
    elif passage is not None and where is not None:
        raise PassageShapeError(f"{where}: 'passage' must be a string or an object with 'text'")
    number = 0
    for index, ctx in enumerate(row.get("ctxs") or []):
        entry = _ctx(ctx, number)
        if entry is None and where is not None:
            raise PassageShapeError(f"{where}: ctxs[{index}] must be a string or an object with 'text'")
        if entry is not None and entry.text.strip():
            found.append(entry)
            number += 1
    return found


def _ctx(ctx: Any, number: int) -> RowPassage | None:
    if isinstance(ctx, str):
        return RowPassage("ctxs", number, ctx, None, "")
    if isinstance(ctx, Mapping) and isinstance(ctx.get("text"), str):
        flag = ctx.get("hasanswer")
        hasanswer = bool(flag) if "hasanswer" in ctx else None
        pid, title = _id(ctx.get("id")), _text(ctx.get("title"))
        return RowPassage("ctxs", number, ctx["text"], pid, title, hasanswer, is_object=True)
    return None


def _id(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _text(value: Any) -> str:
    return str(value) if value else ""


def passage_text(passage: Mapping[str, Any]) -> str:
    """``[id] title`` then the text: how a passage reads in SMART's transcripts and QA prompts."""
    head = f"[{passage['id']}] {passage['title']}" if passage.get("title") else f"[{passage['id']}]"
    return f"{head}\n{passage['text']}"
