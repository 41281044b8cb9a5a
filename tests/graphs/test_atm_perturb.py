"""ATM's list perturbation: never drops a gold passage, counts follow the ratios, seeded and pure."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graphs.atm.perturb import Ratios, insert_at_random, perturb, row_rng

ratio = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def lists_with_gold(draw: st.DrawFn) -> tuple[int, set[int]]:
    size = draw(st.integers(min_value=1, max_value=30))
    gold = draw(st.sets(st.integers(min_value=0, max_value=size - 1), max_size=size))
    return size, gold


@given(lists_with_gold(), ratio, ratio, ratio, st.integers())
def test_perturbation_never_drops_a_gold_passage(
    case: tuple[int, set[int]], shuffle: float, drop: float, duplicate: float, seed: int
) -> None:
    size, gold = case
    ratios = Ratios(shuffle=shuffle, drop=drop, duplicate=duplicate)
    out = perturb(size, gold, ratios, random.Random(seed))
    assert gold <= set(out.order)
    assert set(out.order) <= set(range(size)) and not set(out.dropped) & gold
    assert set(out.order) == set(range(size)) - set(out.dropped)  # only dropped positions are missing
    droppable = size - len(gold)
    assert len(out.dropped) == round(drop * droppable)
    kept = size - len(out.dropped)
    assert len(out.duplicated) == round(duplicate * kept) and len(out.order) == kept + len(out.duplicated)
    assert perturb(size, gold, ratios, random.Random(seed)) == out  # pure: same seed, same result


@given(lists_with_gold(), st.integers())
def test_zero_ratios_keep_the_list_as_it_is(case: tuple[int, set[int]], seed: int) -> None:
    size, gold = case
    assert perturb(size, gold, Ratios(), random.Random(seed)).order == list(range(size))


def test_full_drop_keeps_only_gold_and_full_shuffle_permutes() -> None:
    out = perturb(10, {3, 7}, Ratios(drop=1.0), random.Random(0))
    assert out.order == [3, 7] and out.dropped == [0, 1, 2, 4, 5, 6, 8, 9]
    shuffled = perturb(12, set(), Ratios(shuffle=1.0), random.Random(1))
    assert sorted(shuffled.order) == list(range(12)) and shuffled.order != list(range(12))


def test_bad_ratios_and_gold_positions_are_errors() -> None:
    with pytest.raises(ValueError, match=r"shuffle_ratio must be between 0 and 1, got -0\.1"):
        Ratios(shuffle=-0.1)
    with pytest.raises(ValueError, match=r"gold positions \[5\] are outside a list of 3"):
        perturb(3, {5}, Ratios(), random.Random(0))


def test_insertion_keeps_items_in_order_and_rows_have_their_own_draws() -> None:
    out = insert_at_random(["a", "b", "c"], ["X", "Y"], random.Random(3))
    assert [x for x in out if x.islower()] == ["a", "b", "c"] and sorted(x for x in out if x.isupper()) == [
        "X",
        "Y",
    ]
    assert row_rng(0, "q").random() == row_rng(0, "q").random() != row_rng(1, "q").random()
    closed = sum(row_rng(0, "sft", f"question {i}").random() < 0.3 for i in range(2000))
    assert 0.27 < closed / 2000 < 0.33  # the default closed-book share, drawn per row
