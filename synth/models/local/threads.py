"""How many torch threads a model runs: the embedded engine, training and evaluation follow one rule.

torch sizes its pool to every core. When other processes keep some of them busy, every parallel op waits
for its descheduled thread (each op then costs ~10 ms whatever its size: an SFT step took 34-58 s with 2
threads on 2 cores under a load of 8, 7-15 s with 1). So a model runs as many threads as cores are idle
when it loads (at least 1); ``SYNTH_TORCH_THREADS`` pins the count, ``OMP_NUM_THREADS`` leaves torch's.
Imports nothing heavy until asked (torch loads inside the functions).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

THREADS_ENV = "SYNTH_TORCH_THREADS"


def idle_cores(sample_s: float = 0.5, stat: Path = Path("/proc/stat")) -> float | None:
    """How many cores sat idle over the next ``sample_s`` seconds (from /proc/stat's ``cpu`` line), or
    None where it cannot be read (not Linux)."""

    def totals() -> tuple[int, int]:
        fields = [int(x) for x in stat.read_text(encoding="ascii").split("\n", 1)[0].split()[1:]]
        return sum(fields[:8]), fields[3] + fields[4]  # user..steal; idle + iowait

    try:
        total0, idle0 = totals()
        time.sleep(sample_s)
        total1, idle1 = totals()
    except (OSError, ValueError, IndexError):
        return None
    busy_share = 1 - (idle1 - idle0) / max(total1 - total0, 1)
    return (os.cpu_count() or 1) * (1 - busy_share)


def pick_threads() -> int:
    """``$SYNTH_TORCH_THREADS`` if set; torch's own count if ``OMP_NUM_THREADS`` is set; otherwise the
    usable cores (affinity, cgroup quota) that are idle now (>= 75 % idle over 0.5 s), at least 1.
    A value that is not a whole number raises ValueError naming the variable."""
    pinned = os.environ.get(THREADS_ENV)
    if pinned:
        try:
            return max(1, int(pinned))
        except ValueError:
            raise ValueError(f"${THREADS_ENV} must be a whole number of threads, got {pinned!r}") from None
    import torch

    from synth.models.local.hardware import usable_cpus

    if os.environ.get("OMP_NUM_THREADS"):
        return int(torch.get_num_threads())
    usable = usable_cpus()
    idle = idle_cores()
    # a core counts when >= 75 % of it was idle: a half-busy one would make every op wait for its thread
    return usable if idle is None else max(1, min(usable, int(idle + 0.25)))


def apply_threads() -> int:
    """Set torch's intra-op thread count to :func:`pick_threads` and return it."""
    import torch

    threads = pick_threads()
    torch.set_num_threads(threads)
    return threads
