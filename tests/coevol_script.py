"""A scripted CoEvol backend for the loopback server: each row's instruction says how its judge behaves.

Instruction keywords: ``ACCEPT`` (the judge prefers the revision in both orders), ``TIE`` (``equal``),
``BADJUDGE`` (the judge never returns valid JSON, repair turn included), ``HALF`` (one order unparseable,
the other prefers the revision), ``WORSE`` (the judge prefers the previous response).
The editor wraps the previous response as ``better(...)``, so the newer response is the longer one.
"""

from __future__ import annotations

import json
import re
from typing import Any

from synth.testing.replies import last_user_text, system_text


def coevol_responder(request: dict[str, Any]) -> str:
    system, user = system_text(request), last_user_text(request)
    first = request["messages"][1]["content"] if len(request["messages"]) > 1 else user
    if "two-round debate" in system:
        side = "defender" if "Your side: the response is good" in system else "critic"
        return json.dumps({"argument": f"{side} argues"})
    if "You are an advisor" in system:
        return json.dumps({"suggestions": ["be more precise", "add an example"]})
    if "You are an editor" in system:
        # the row's prompt is the first user message (a repair turn's last one is the repair request)
        previous = re.search(r"Previous response: (.*)\n\nSuggestions", first, re.S).group(1)  # type: ignore[union-attr]
        return json.dumps({"response": f"better({previous})"})
    if "impartial judge" in system:
        return _judge(first)
    if "helpful assistant" in system:
        return json.dumps({"response": "first draft"})
    raise LookupError(f"unscripted role: {system[:80]!r}")


def _judge(prompt: str) -> str:
    one = re.search(r"\[Assistant 1\]\n(.*)\n\n\[Assistant 2\]", prompt, re.S).group(1)  # type: ignore[union-attr]
    two = prompt.split("[Assistant 2]\n", 1)[1]
    new_is_first = len(one) > len(two)
    if "BADJUDGE" in prompt or ("HALF" in prompt and new_is_first):
        return "I think the first one, probably."
    if "TIE" in prompt:
        verdict = "equal"
    elif "WORSE" in prompt:
        verdict = "assistant 2" if new_is_first else "assistant 1"
    else:  # ACCEPT / HALF: the revision wins
        verdict = "assistant 1" if new_is_first else "assistant 2"
    return json.dumps({"verdict": verdict, "explanation": "scripted"})
