"""Filters over a run's trajectories: rule-based, environment-based (gold answers) and exact dedup.

A filter never deletes: a trajectory that fails one gets status ``filtered`` and a ``filter_reason`` naming
the filter and why, so counts by reason can be reported and nothing is silently dropped. Filters run on
stored records only (``synth filter RUN --config filters.yaml``), so re-applying them never calls a model;
re-applying first restores every previously filtered row to ``ok``.

Fields are dotted paths into the trajectory (``result.evolved``, ``seed.answers``, ``result.answer``).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from synth.errors import SynthError
from synth.store import RunStore
from synth.trajectory import Trajectory

DEFAULT_REFUSALS = (
    "as an ai language model",
    "i cannot help with",
    "i'm sorry, but i can't",
    "i am unable to",
    "i can't assist with",
)


class FilterSpec(BaseModel):
    """One filter. ``kind`` picks the check; the other keys configure it."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["length", "regex", "required", "refusal", "exact_match", "f1", "dedup"]
    field: str = "result.evolved"
    min_chars: int | None = None
    max_chars: int | None = None
    pattern: str | None = None
    must_match: bool = False
    fields: list[str] = Field(default_factory=list)
    phrases: list[str] = Field(default_factory=lambda: list(DEFAULT_REFUSALS))
    answers_field: str = "seed.answers"
    threshold: float = 0.5


class FilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filters: list[FilterSpec]


def load_config(path: Path | str) -> FilterConfig:
    """Read a filters YAML file; errors name the file and the offending entry."""
    path = Path(path)
    try:
        return FilterConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SynthError(f"{path}: invalid filter config: {problems}") from None


def lookup(trajectory: Trajectory, dotted: str) -> Any:
    value: Any = trajectory.model_dump(mode="json")
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def normalize(text: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalize(prediction).split(), normalize(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or not common:
        return float(pred == ref)
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def check(spec: FilterSpec, trajectory: Trajectory, seen: set[str]) -> str | None:
    """The reason ``trajectory`` fails ``spec``, or None when it passes."""
    value = lookup(trajectory, spec.field)
    text = value if isinstance(value, str) else ""
    if spec.kind == "length":
        if spec.min_chars is not None and len(text) < spec.min_chars:
            return f"length: {spec.field} has {len(text)} chars < {spec.min_chars}"
        if spec.max_chars is not None and len(text) > spec.max_chars:
            return f"length: {spec.field} has {len(text)} chars > {spec.max_chars}"
    elif spec.kind == "regex":
        found = re.search(spec.pattern or "", text) is not None
        if found != spec.must_match:
            verb = "does not match" if spec.must_match else "matches"
            return f"regex: {spec.field} {verb} {spec.pattern!r}"
    elif spec.kind == "required":
        missing = [f for f in spec.fields if lookup(trajectory, f) in (None, "", [])]
        if missing:
            return f"required: missing {', '.join(missing)}"
    elif spec.kind == "refusal":
        lowered = text.lower()
        for phrase in spec.phrases:
            if phrase.lower() in lowered:
                return f"refusal: {spec.field} contains {phrase!r}"
    elif spec.kind in ("exact_match", "f1"):
        return _gold_check(spec, text, lookup(trajectory, spec.answers_field))
    elif spec.kind == "dedup":
        key = normalize(text)
        if key in seen:
            return f"dedup: {spec.field} duplicates an earlier row"
        seen.add(key)
    return None


def _gold_check(spec: FilterSpec, text: str, answers: Any) -> str | None:
    if not isinstance(answers, list) or not answers:
        return None  # no gold answers: the environment cannot judge this row
    if spec.kind == "exact_match":
        if not any(normalize(text) == normalize(str(a)) for a in answers):
            return f"exact_match: {spec.field} matches no gold answer"
        return None
    best = max(token_f1(text, str(a)) for a in answers)
    return f"f1: {best:.2f} < {spec.threshold}" if best < spec.threshold else None


def apply_filters(run_dir: Path | str, config: FilterConfig) -> Counter[str]:
    """Re-apply ``config`` to every ok or filtered record; returns counts by status and by filter kind."""
    store = RunStore(run_dir)
    counts: Counter[str] = Counter()
    seen: dict[int, set[str]] = {i: set() for i in range(len(config.filters))}
    try:
        batch: list[Trajectory] = []
        for trajectory in _candidates(store):
            reason = next(
                (r for i, spec in enumerate(config.filters) if (r := check(spec, trajectory, seen[i]))), None
            )
            trajectory.status = "filtered" if reason else "ok"
            trajectory.filter_reason = reason
            counts[trajectory.status] += 1
            if reason:
                counts[f"filtered:{reason.split(':')[0]}"] += 1
            batch.append(trajectory)
            if len(batch) >= 500:
                store.update(batch)
                batch = []
        store.update(batch)
    finally:
        store.close()
    return counts


def _candidates(store: RunStore) -> Iterable[Trajectory]:
    for trajectory in store.iter_records():
        if trajectory.status in ("ok", "filtered"):
            yield trajectory
