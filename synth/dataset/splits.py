"""Train/test splits and shuffling of an export, by seed row, reproducible from ``--seed``.

Splits are drawn over *trajectories*, not rows: a format that writes several rows per seed row (SMART's
``sft-short``) never has one row of a trajectory in ``train`` and another in ``test``. The draw is a
seeded permutation (numpy's PCG64), so the same run, format and seed give the same splits. ``test=0.1``
takes a fraction (rounded, at least one trajectory), ``test=200`` a count; ``train`` keeps the rest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from synth.errors import ExportError

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def parse_split(text: str) -> tuple[str, float]:
    """``NAME=FRACTION`` (0 < f < 1) or ``NAME=COUNT`` (an integer >= 1), e.g. ``test=0.1``."""
    name, sep, value = text.partition("=")
    name = name.strip()
    try:
        amount = float(value)
    except ValueError:
        amount = -1.0
    if (
        not sep
        or not _NAME.fullmatch(name)
        or name == "train"
        or amount <= 0
        or (amount >= 1 and not amount.is_integer())
    ):
        raise ExportError(
            f"--split {text!r}: write NAME=FRACTION (0 < FRACTION < 1, e.g. test=0.1) or NAME=COUNT "
            "(e.g. test=200); NAME is a word other than 'train', which keeps the rest."
        )
    return name, amount


def split_sizes(groups: int, splits: Mapping[str, float]) -> dict[str, int]:
    """Trajectories per named split; ``train`` must keep at least one."""
    sizes = {
        name: int(amount) if amount >= 1 else max(1, round(groups * amount))
        for name, amount in splits.items()
    }
    if groups and sum(sizes.values()) >= groups:
        wanted = ", ".join(f"{n}={s}" for n, s in sizes.items())
        raise ExportError(
            f"splits {wanted} leave no trajectory for train: the export has rows from {groups} trajectories. "
            "Use smaller splits or export more rows."
        )
    return sizes


def assign(
    group_of_row: Sequence[int], groups: int, splits: Mapping[str, float], *, shuffle: bool, seed: int
) -> dict[str, list[int]]:
    """Row indices per split (``train`` first); rows keep their order unless ``shuffle``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    order = rng.permutation(groups) if splits else np.arange(groups)
    split_of_group = np.zeros(groups, dtype=np.int64)  # 0 = train
    start = 0
    names = ["train", *splits]
    for index, size in enumerate(split_sizes(groups, splits).values(), start=1):
        split_of_group[order[start : start + size]] = index
        start += size
    rows_split = (
        split_of_group[np.asarray(group_of_row, dtype=np.int64)] if group_of_row else np.zeros(0, int)
    )
    out: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        rows = np.flatnonzero(rows_split == index)
        if shuffle:
            rows = rng.permutation(rows)
        out[name] = rows.tolist()
    return out
