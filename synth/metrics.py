"""SQuAD-style answer metrics shared by graphs (EM flags, hasanswer), filters, reports and training.

One normalisation everywhere (SQuAD v1.1: lower case, no punctuation, no articles, single spaces), so an
exact match means the same thing in a SMART trajectory, an ``exact_match`` filter, a GRPO reward and
``synth eval qa``.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: Sequence[str]) -> bool:
    """Whether ``prediction`` equals any gold answer after :func:`normalize_answer`."""
    predicted = normalize_answer(prediction)
    return any(predicted == normalize_answer(answer) for answer in answers)


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1 of ``prediction`` against one gold answer (1.0 when both normalise to nothing)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or not common:
        return float(pred == ref)
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_f1(prediction: str, answers: Sequence[str]) -> float:
    """Token F1 against the best-matching gold answer (0.0 with no answers)."""
    return max((token_f1(prediction, answer) for answer in answers), default=0.0)


def has_answer(text: str, answers: Sequence[str]) -> bool:
    """Whether any answer occurs in ``text`` as whole words, after normalisation (DPR's ``hasanswer``)."""
    haystack = f" {normalize_answer(text)} "
    return any(f" {needle} " in haystack for needle in map(normalize_answer, answers) if needle)
