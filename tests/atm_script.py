"""A scripted ATM backend for the loopback server: what each role answers and what each score is.

* Attacker: a new fabrication on every call, numbered per question in arrival order (``FAKE0``,
  ``FAKE1``...), claiming ``Lyon`` as the answer. The question may list the log-probability that the
  scorer gives the gold answer after each fabrication, ``LPS: -1.0 -3.0 -2.0`` (call n gets the n-th);
  the fabrication text carries it as ``LP=-3.0``. ``BADATTACK`` -> never valid JSON (every sample fails);
  ``ONEBAD`` -> the first call is not valid JSON (one sample fails). A repair turn always fails again.
* Scorer (a request with vLLM's ``prompt_logprobs``): hand-built prompt log-probabilities, one per
  whitespace token as the loopback server counts them: -0.1 for every prompt token, and for the
  continuation (the final assistant message) the ``LP=`` of the document in the prompt, or -0.05 when the
  document is not a fabrication.
* Generator: ``Lyon`` when a fabrication is among the documents, else the first word of the first
  document (``Paris``), else (closed-book) ``unknown``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from threading import Lock
from typing import Any

from synth.testing.replies import prompt_text, system_text, tokens

GOLD_LP = -0.05
PROMPT_LP = -0.1


class AtmScript:
    """The responder; ``calls`` counts attacker calls per question (the server's view of the N samples)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = Lock()

    def __call__(self, request: dict[str, Any]) -> Any:
        system, messages = system_text(request), request["messages"]
        first_user = next(m["content"] for m in messages if m["role"] == "user")
        if request.get("prompt_logprobs") is not None:
            return {"content": "x", "prompt_logprobs": score_pairs(request)}
        if "You are the Attacker" in system:
            if messages[-1]["content"].startswith("Your reply did not"):  # a repair turn: fail it again
                return "still not json"
            return self._attack(first_user)
        if "You are the Generator" in system:
            if request.get("max_tokens") == 1:  # the scorer's prompt-only length probe
                return "x"
            return generate(first_user)
        raise LookupError(f"unscripted role: {system[:80]!r}")

    def _attack(self, prompt: str) -> str:
        question = re.search(r"Question: (.*)", prompt).group(1)  # type: ignore[union-attr]
        if "BADATTACK" in question:
            return "a fabricated passage, trust me"
        with self._lock:
            number = self.calls[question]
            self.calls[question] += 1
        if "ONEBAD" in question and number == 0:
            return "not json"
        listed = re.search(r"LPS: ([-\d. ]+)", question)
        lps = listed.group(1).split() if listed else []
        lp = lps[number % len(lps)] if lps else f"-{1 + number}.0"
        text = f"Lyon is the capital of France, FAKE{number} records say. LP={lp}"
        return json.dumps({"title": f"Fabricated {number}", "text": text})


def score_pairs(request: dict[str, Any]) -> list[tuple[str, float]]:
    """Prompt log-probabilities for a scoring request (see the module doc)."""
    continuation = request["messages"][-1]["content"]
    found = re.search(r"LP=(-?\d+(?:\.\d+)?)", prompt_text(request))
    lp = float(found.group(1)) if found else GOLD_LP
    words = tokens(prompt_text(request))
    tail = len(tokens(continuation))
    return [(w, PROMPT_LP) for w in words[:-tail]] + [(w, lp) for w in words[-tail:]]


def generate(prompt: str) -> str:
    if "FAKE" in prompt:
        return "Lyon"
    document = re.search(r"^\[1\] .*\n(\S+)", prompt, re.M)
    return document.group(1) if document else "unknown"
