"""ATM's final state -> the trajectory's ``result`` and ``scores``.

The result keeps everything the exports need, as the graph saw it: the prompts are the messages the
attacker and the generator were actually sent (taken from their steps), and the closed-book prompt is the
generator's template rendered without documents. Exports never re-render templates.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from graphs.atm.seed import example_passage
from graphs.smart.exports import exact_match
from roles.atm import ATTACKER, GENERATOR, generator_inputs
from synth.qa import Document, gold_answers
from synth.retrieval import QueryHits


class AtmPassage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    title: str
    text: str
    gold: bool
    hasanswer: bool
    source: str


class Fabrication(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample: int
    ok: bool
    title: str
    text: str
    error: str | None
    #: The generator's mean NLL of the gold answer given this document alone (None: not scored).
    nll: float | None


class AtmResult(BaseModel):
    """ATM's trajectory ``result``, typed: what the exports, the report and ``train/`` read
    (``trajectory.result_as(AtmResult)``); unknown keys are refused, so model and graph cannot drift."""

    model_config = ConfigDict(extra="forbid")
    question: str
    answers: list[str]
    gold_answer: str
    passages: list[AtmPassage]
    retrieval: list[QueryHits]
    example: Document
    attacker_prompt: list[dict[str, str]]
    fabrications: list[Fabrication]
    gold_nll: float | None
    chosen: int | None
    rejected: int | None
    perturbation: dict[str, Any]
    attacked_context: list[dict[str, Any]]
    clean_prompt: list[dict[str, str]]
    attacked_prompt: list[dict[str, str]]
    closed_book_prompt: list[dict[str, str]]
    clean_answer: str
    attacked_answer: str
    exact_match_clean: bool
    exact_match_attacked: bool
    sft_context: Literal["closed_book", "with_documents"]
    #: The generator's answer under attack and the gold one, for synth.dataset.reuse (when it was prompted).
    candidates: dict[str, Any] | None = None


class AtmScores(BaseModel):
    """ATM's trajectory ``scores``, typed (``AtmScores.model_validate(trajectory.scores)``)."""

    model_config = ConfigDict(extra="forbid")
    exact_match_clean: float
    exact_match_attacked: float
    fabrications: int
    nll_max: float
    nll_min: float
    nll_margin: float
    gold_nll: float | None


def request_messages(step: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """What a role was sent: its messages up to the first reply (a repair turn's are not included)."""
    out: list[dict[str, str]] = []
    for message in (step or {}).get("messages", []):
        if message["role"] == "assistant":
            break
        out.append({"role": message["role"], "content": message["content"]})
    return out


def _step(state: Mapping[str, Any], role: str, node: str) -> dict[str, Any] | None:
    return next(
        (s for s in state.get("steps", []) if s["role"] == role and s["node"] == node and s["ok"]), None
    )


def preference_pair(fabrications: Sequence[Mapping[str, Any]]) -> tuple[int, int] | None:
    """(chosen, rejected) sample indices: the highest-NLL fabrication over the lowest; None on a tie or
    with fewer than two scored fabrications. Ties on NLL go to the lower sample index."""
    scored = [f for f in fabrications if f.get("nll") is not None]
    if len(scored) < 2:
        return None
    chosen = max(scored, key=lambda f: (f["nll"], -f["sample"]))
    rejected = min(scored, key=lambda f: (f["nll"], f["sample"]))
    if chosen["nll"] <= rejected["nll"]:
        return None
    return chosen["sample"], rejected["sample"]


def closed_book_prompt(question: str) -> list[dict[str, str]]:
    system, user = GENERATOR.render(**generator_inputs(question, []))
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def to_trajectory(state: Mapping[str, Any]) -> dict[str, Any]:
    seed = state["seed"]
    golds = gold_answers(seed)
    nll = {r["sample"]: r["nll"] for r in state.get("ranking", [])}
    fabrications = [
        {**{k: f[k] for k in ("sample", "ok", "title", "text", "error")}, "nll": nll.get(f["sample"])}
        for f in sorted(state.get("fabrications", []), key=operator.itemgetter("sample"))
    ]
    pair = preference_pair(fabrications)
    answers = {a["context"]: a["answer"] for a in state.get("answers", [])}
    passages = state["passages"]
    attack_step = next((s for s in state.get("steps", []) if s["role"] == ATTACKER.name and s["ok"]), None)
    em_clean, em_attacked = exact_match(answers["clean"], golds), exact_match(answers["attacked"], golds)
    result = {
        "question": seed["question"],
        "answers": golds,
        "gold_answer": golds[0],
        "passages": [
            {k: p[k] for k in ("id", "title", "text", "gold", "hasanswer", "source")} for p in passages
        ],
        "retrieval": state.get("retrieval", []),
        "example": example_passage(passages),
        "attacker_prompt": request_messages(attack_step),
        "fabrications": fabrications,
        "gold_nll": state.get("gold_nll"),
        "chosen": pair[0] if pair else None,
        "rejected": pair[1] if pair else None,
        "perturbation": state["perturbation"],
        "attacked_context": state["attacked_context"],
        "clean_prompt": request_messages(_step(state, GENERATOR.name, "answer_clean")),
        "attacked_prompt": request_messages(_step(state, GENERATOR.name, "answer_attacked")),
        "closed_book_prompt": closed_book_prompt(seed["question"]),
        "clean_answer": answers["clean"],
        "attacked_answer": answers["attacked"],
        "exact_match_clean": em_clean,
        "exact_match_attacked": em_attacked,
        "sft_context": state["sft_context"],
    }
    scored = [f["nll"] for f in fabrications if f["nll"] is not None]
    scores = {
        "exact_match_clean": float(em_clean),
        "exact_match_attacked": float(em_attacked),
        "fabrications": len(scored),
        "nll_max": max(scored),
        "nll_min": min(scored),
        "nll_margin": max(scored) - min(scored),
        "gold_nll": state.get("gold_nll"),
    }
    if result["attacked_prompt"]:
        result["candidates"] = generator_candidates(result)
    return {"result": result, "scores": scores}


def generator_candidates(result: Mapping[str, Any]) -> dict[str, Any]:
    """The generator's answer under attack and the gold answer, for synth.dataset.reuse's generic exports.

    A wrong answer under attack becomes a ``corrections`` record (the attacked prompt, the misled answer,
    the gold one) and ``rl`` rows carry the attacked prompt with the gold answers as reward fields.
    """
    misled = not result["exact_match_attacked"]
    return {
        "prompt": result["attacked_prompt"],
        "answers": [
            {"text": result["gold_answer"], "score": 1.0, "label": "gold", "correct": True},
            {
                "text": result["attacked_answer"],
                "score": 0.0 if misled else 1.0,
                "label": "generator under attack",
                "correct": not misled,
            },
        ],
        "gold": list(result["answers"]),
    }
