"""ATM's seed rows and passages: what a row may carry, and how its context passages are assembled.

A seed has a ``question`` and gold ``answers`` (ATM scores fabrications by the gold answer's likelihood,
so at least one is required) and may bring its own passages, in either of the two usual shapes:

* ``passage``: one passage, a string (with optional sibling ``title`` and ``passage_id`` fields, as in
  the NQ rows of ``qa_passages.jsonl``) or an object ``{id?, title?, text}``;
* ``ctxs``: a list of ``{id?, title?, text, hasanswer?, score?}`` (the DPR / ATM data format).

Passages are JSON-native dicts ``{id, title, text, gold, source}``; ``gold`` marks the passages that list
perturbation must never drop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from synth.metrics import has_answer
from synth.qa import row_passages


class Ctx(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | None = None
    title: str = ""
    text: str = Field(min_length=1)
    hasanswer: bool | None = None


class AtmSeed(BaseModel):
    """A seed row: ``question``, gold ``answers``, optional ``passage`` or ``ctxs`` (see the module doc)."""

    model_config = ConfigDict(extra="allow")
    question: str = Field(min_length=1)
    answers: list[str] = Field(min_length=1)
    passage: str | Ctx | None = None
    title: str | None = None
    passage_id: str | None = None
    ctxs: list[Ctx] | None = None

    @field_validator("answers", mode="before")
    @classmethod
    def _one_answer_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("answers")
    @classmethod
    def _answers_are_not_blank(cls, value: list[str]) -> list[str]:
        if not any(a.strip() for a in value):
            raise ValueError("needs at least one non-empty gold answer: ATM scores fabrications by it")
        return value


def seed_passages(seed: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The seed's own passages (:func:`synth.qa.row_passages`); gold unless ``ctxs`` carry ``hasanswer``
    flags (then only the flagged)."""
    found = row_passages(seed)
    flagged = any(p.hasanswer is not None for p in found if p.field == "ctxs")
    return [
        _passage(
            p.id or ("seed-0" if p.field == "passage" else f"ctx-{p.number}"),
            p.title,
            p.text,
            bool(p.hasanswer) if flagged and p.field == "ctxs" else True,
        )
        for p in found
    ]


def mark_gold(passages: list[dict[str, Any]], answers: Sequence[str]) -> None:
    """Set each passage's ``hasanswer``; without a gold passage of the seed's own, the first passage
    that holds an answer (the top retrieved one) becomes gold."""
    for passage in passages:
        passage["hasanswer"] = has_answer(passage["text"], answers)
    if not any(p["gold"] for p in passages):
        first = next((p for p in passages if p["hasanswer"]), None)
        if first is not None:
            first["gold"] = True


def merge_passages(own: list[dict[str, Any]], retrieved: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The seed's passages, then the retrieved ones that are not already there (same id or same text)."""
    seen_ids = {p["id"] for p in own}
    seen_texts = {" ".join(p["text"].split()) for p in own}
    merged = list(own)
    for hit in retrieved:
        text = " ".join(hit["text"].split())
        if hit["id"] in seen_ids or text in seen_texts:
            continue
        seen_ids.add(hit["id"])
        seen_texts.add(text)
        merged.append(_passage(hit["id"], hit.get("title") or "", hit["text"], False, source="retrieval"))
    return merged


def _passage(pid: Any, title: str, text: str, gold: bool, *, source: str = "seed") -> dict[str, Any]:
    return {"id": str(pid), "title": str(title), "text": str(text), "gold": gold, "source": source}


def doc(passage: Mapping[str, Any]) -> dict[str, Any]:
    """A passage as a context document: id, title, text."""
    return {"id": passage["id"], "title": passage["title"], "text": passage["text"]}


def example_passage(passages: list[dict[str, Any]]) -> dict[str, Any]:
    """The attacker's example: the first gold passage, else the first passage."""
    return doc(next((p for p in passages if p["gold"]), passages[0]))
