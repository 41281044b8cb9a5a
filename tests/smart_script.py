"""A scripted SMART backend for the loopback server: each row's question says how its roles behave.

* Intent Reconstructor: ``QUERIES: a; b; c`` in the question -> those queries; else the question itself.
  ``BADIR`` -> never valid JSON (the row fails).
* Fact Locator: a passage is relevant when it contains the row's correct answer (or, without one, when
  the question says ``ALLRELEVANT``); the span is the passage's first sentence holding the answer, with its
  spacing mangled (the rule check normalises whitespace). ``HALLUCINATE`` adds a span that is in no
  passage; ``BADFL`` -> never valid JSON (the passage counts as irrelevant, the row goes on).
* Response Generator: with facts, the first word of the first fact, citing every fact plus a bogus id
  (dropped by the graph); without facts, ``unknown``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from synth.testing.replies import prompt_text, system_text

INVENTED_SPAN = "Its mayor is a dragon named Kevin."


def smart_responder(request: dict[str, Any]) -> str:
    system, text = system_text(request), prompt_text(request)
    first_user = next(m["content"] for m in request["messages"] if m["role"] == "user")
    question = re.search(r"Instruction: (.*)", first_user).group(1)  # type: ignore[union-attr]
    if "Intent Reconstructor" in system:
        if "BADIR" in question:
            return "queries: who knows"
        listed = re.search(r"QUERIES: (.*)", question)
        queries = [q.strip() for q in listed.group(1).split(";")] if listed else [question]
        return json.dumps({"queries": queries})
    if "Fact Locator" in system:
        if "BADFL" in text:
            return "relevant, I think"
        return json.dumps(_locate(question, first_user))
    if "Response Generator" in system:
        facts = re.findall(r"^\[([^\]]+)\] [^:]*: (.*)$", first_user, re.M)
        if not facts:
            return json.dumps({"answer": "unknown", "citations": []})
        return json.dumps(
            {"answer": facts[0][1].split()[0], "citations": [i for i, _ in facts] + ["bogus-id"]}
        )
    raise LookupError(f"unscripted role: {system[:80]!r}")


def _locate(question: str, prompt: str) -> dict[str, Any]:
    answer = re.search(r"Correct answer: (.*)", prompt)
    passage = prompt.split("\nPassage [", 1)[1].split("\n", 1)[1]
    needle = answer.group(1).split(" | ")[0] if answer else None
    sentences = [s.strip() + "." for s in passage.split(".") if s.strip()]
    if needle is None and "ALLRELEVANT" in question:
        needle = sentences[0].split()[0]
    hits = [s for s in sentences if needle and needle in s]
    if not hits:
        return {"relevant": False, "spans": []}
    spans = [hits[0].replace(" ", "  \n ", 1)]  # mangled spacing: still contained after normalisation
    if "HALLUCINATE" in question:
        spans.append(INVENTED_SPAN)
    return {"relevant": True, "spans": spans}
