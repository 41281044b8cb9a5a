"""Checks that need no model: rules (length, regex, required, refusal, language), gold answers, dedup.

A checker returns the reason a trajectory fails, or None. Reasons start with the filter kind and a colon
(``length: ...``), which is how counts by reason are grouped. Dedup checkers are stateful: they remember
the rows that reached them (in store order), and a duplicate's reason names the earlier row's id.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from synth.filters.config import (
    DedupSpec,
    GoldSpec,
    LanguageSpec,
    LengthSpec,
    NearDupSpec,
    RefusalSpec,
    RegexSpec,
    RequiredSpec,
)
from synth.filters.language import detect
from synth.metrics import normalize_answer as normalize
from synth.metrics import token_f1
from synth.trajectory import Trajectory


def lookup(trajectory: Trajectory, dotted: str) -> Any:
    """The value at a dotted path (``result.evolved``), or None when any part is missing."""
    value: Any = trajectory.model_dump(mode="json")
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def text_at(trajectory: Trajectory, dotted: str) -> str:
    value = lookup(trajectory, dotted)
    return value if isinstance(value, str) else ""


def check_length(spec: LengthSpec, trajectory: Trajectory) -> str | None:
    size = len(text_at(trajectory, spec.field))
    if spec.min_chars is not None and size < spec.min_chars:
        return f"length: {spec.field} has {size} chars < {spec.min_chars}"
    if spec.max_chars is not None and size > spec.max_chars:
        return f"length: {spec.field} has {size} chars > {spec.max_chars}"
    return None


def check_regex(spec: RegexSpec, trajectory: Trajectory) -> str | None:
    found = re.search(spec.pattern, text_at(trajectory, spec.field)) is not None
    if found != spec.must_match:
        verb = "does not match" if spec.must_match else "matches"
        return f"regex: {spec.field} {verb} {spec.pattern!r}"
    return None


def check_required(spec: RequiredSpec, trajectory: Trajectory) -> str | None:
    missing = [f for f in spec.fields if lookup(trajectory, f) in (None, "", [])]
    return f"required: missing {', '.join(missing)}" if missing else None


def check_refusal(spec: RefusalSpec, trajectory: Trajectory) -> str | None:
    lowered = text_at(trajectory, spec.field).lower()
    for phrase in spec.phrases:
        if phrase.lower() in lowered:
            return f"refusal: {spec.field} contains {phrase!r}"
    return None


def check_language(spec: LanguageSpec, trajectory: Trajectory) -> str | None:
    text = text_at(trajectory, spec.field)
    if len(text.strip()) < spec.min_chars:
        return None  # too short to tell: not judged
    language, probability = detect(text)
    if language and language not in spec.languages and probability >= spec.min_confidence:
        return (
            f"language: {spec.field} is {language!r} (p={probability:.2f}), not {', '.join(spec.languages)}"
        )
    return None


def check_gold(spec: GoldSpec, trajectory: Trajectory) -> str | None:
    text, answers = text_at(trajectory, spec.field), lookup(trajectory, spec.answers_field)
    if not isinstance(answers, list) or not answers:
        return None  # no gold answers: the environment cannot judge this row
    if spec.kind == "exact_match":
        if not any(normalize(text) == normalize(str(a)) for a in answers):
            return f"exact_match: {spec.field} matches no gold answer"
        return None
    best = max(token_f1(text, str(a)) for a in answers)
    return f"f1: {best:.2f} < {spec.threshold}" if best < spec.threshold else None


class ExactDedup:
    """Remembers the normalised text (as a digest) of each row that reached it, with the row's id."""

    def __init__(self, spec: DedupSpec) -> None:
        self.spec = spec
        self.first: dict[bytes, str] = {}

    def __call__(self, trajectory: Trajectory) -> str | None:
        key = hashlib.blake2b(
            normalize(text_at(trajectory, self.spec.field)).encode(), digest_size=16
        ).digest()
        earlier = self.first.setdefault(key, trajectory.id)
        if earlier != trajectory.id:
            return f"dedup: {self.spec.field} duplicates row {earlier}"
        return None


class NearDedup:
    """MinHash LSH (datasketch): a row whose estimated Jaccard similarity to an earlier kept row reaches
    ``threshold`` is a near duplicate of the most similar such row.

    Shingles are character n-grams of the normalised text, which work for one-line answers and long
    responses alike. Memory: one MinHash (``num_perm`` 64-bit values, 1 KiB at 128) per kept row.
    """

    def __init__(self, spec: NearDupSpec) -> None:
        from datasketch import MinHashLSH

        self.spec = spec
        self.lsh = MinHashLSH(threshold=spec.threshold, num_perm=spec.num_perm)
        self.hashes: dict[str, Any] = {}

    def minhash(self, text: str) -> Any:
        from datasketch import MinHash

        normal = normalize(text)
        n = self.spec.ngram
        shingles = {normal[i : i + n] for i in range(max(1, len(normal) - n + 1))}
        digest = MinHash(num_perm=self.spec.num_perm, seed=1)
        digest.update_batch([s.encode() for s in shingles])
        return digest

    def __call__(self, trajectory: Trajectory) -> str | None:
        text = text_at(trajectory, self.spec.field)
        if not text.strip():
            return None  # nothing to compare; `required` or `length` filters catch empty text
        digest = self.minhash(text)
        scored = [(digest.jaccard(self.hashes[key]), key) for key in self.lsh.query(digest)]
        similar = [(s, key) for s, key in scored if s >= self.spec.threshold]
        if similar:
            similarity, earlier = max(similar, key=lambda pair: pair[0])
            return f"near_dup: {self.spec.field} ~ row {earlier} (jaccard {similarity:.2f})"
        if trajectory.id not in self.hashes:
            self.lsh.insert(trajectory.id, digest)
            self.hashes[trajectory.id] = digest
        return None
