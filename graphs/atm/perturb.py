"""ATM's list perturbation and fabrication placement: pure functions of their inputs and a seed.

The attacker of ATM also attacks the *list* of retrieved passages: it shuffles, drops and duplicates
passages, so the generator learns not to rely on position or on a single copy. The gold passage is never
dropped: the attacked context must still hold the evidence, or the generator would be trained to answer
without any. Everything works on positions (indices into the retrieved list), so the caller keeps the
passages themselves and the record of what was done is small and JSON-native.

Ratios are fractions of the list, rounded to a count, so ``drop_ratio=0.5`` over 4 droppable passages
drops exactly 2: predictable, and the same on every run with the same seed.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Ratios:
    """How much of the list to perturb; each in [0, 1]."""

    shuffle: float = 0.0
    drop: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("shuffle", "drop", "duplicate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"atm option {name}_ratio must be between 0 and 1, got {value}")


@dataclass(frozen=True)
class Perturbed:
    """The perturbed order (indices into the original list, duplicates repeated) and what was done."""

    order: list[int]
    dropped: list[int] = field(default_factory=list)
    duplicated: list[int] = field(default_factory=list)
    shuffled: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "dropped": self.dropped,
            "duplicated": self.duplicated,
            "shuffled": self.shuffled,
        }


def _count(ratio: float, size: int) -> int:
    return round(ratio * size)


def perturb(size: int, gold: Collection[int], ratios: Ratios, rng: random.Random) -> Perturbed:
    """Drop, then duplicate, then shuffle positions of a list of ``size`` passages; ``gold`` stays.

    * drop: ``round(drop * droppable)`` of the non-gold positions are removed;
    * duplicate: ``round(duplicate * kept)`` kept positions get a second copy at a random place;
    * shuffle: ``round(shuffle * len)`` places of the resulting list are permuted among themselves
      (1.0 = the whole list shuffled).
    """
    if any(not 0 <= g < size for g in gold):
        raise ValueError(f"gold positions {sorted(gold)} are outside a list of {size} passages")
    droppable = [i for i in range(size) if i not in gold]
    dropped = sorted(rng.sample(droppable, _count(ratios.drop, len(droppable))))
    order = [i for i in range(size) if i not in set(dropped)]
    duplicated = sorted(rng.sample(order, _count(ratios.duplicate, len(order))))
    for index in duplicated:
        order.insert(rng.randint(0, len(order)), index)
    places = sorted(rng.sample(range(len(order)), _count(ratios.shuffle, len(order))))
    moved = [order[p] for p in places]
    rng.shuffle(moved)
    for place, index in zip(places, moved, strict=True):
        order[place] = index
    return Perturbed(order=order, dropped=dropped, duplicated=duplicated, shuffled=places)


def insert_at_random(items: Sequence[Any], extra: Sequence[Any], rng: random.Random) -> list[Any]:
    """``items`` with each of ``extra`` inserted at a random place (``items`` keep their order)."""
    out = list(items)
    for item in extra:
        out.insert(rng.randint(0, len(out)), item)
    return out


def row_rng(seed: int, *parts: str) -> random.Random:
    """A generator seeded by the run's seed and the row's identity: the same row, the same draws."""
    return random.Random("\x1f".join([str(seed), *parts]))
