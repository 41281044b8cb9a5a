"""The LM head only where it is needed.

Gemma-3's 262k-token vocabulary makes its LM head (≈168M parameters) larger than the transformer body, so
projecting every position of every sequence onto the vocabulary dominates a CPU training step. Only the
positions whose next token carries a loss (assistant / completion tokens) need it:

* **SFT and DPO**: TRL 1.16 already runs the head through a chunked, fused log-prob kernel
  (``add_fused_lm_head``) that never builds the ``(batch, seq, vocab)`` logits. On Triton devices it
  projects only the positions with a label; elsewhere — CPUs included — it projects *every* position (so
  that tile shapes stay fixed for Neuron's compiler) and zeroes the ignored ones afterwards.
  :func:`use_compact_head` makes the label-only ("compact") choice on CPU and MPS too. The kernel, and so
  the loss and its gradient, are the same; only the rows it is given differ.
* **MITO**: the KL needs whole distributions, so its loss asks the model for logits at the answer
  positions only, with transformers' boolean ``logits_to_keep`` mask (:func:`loss_positions`).
* **Generation**: ``generate`` already passes ``logits_to_keep=1`` (the last position) to models that
  accept it; nothing to do.

``head_on: all`` in a config switches the compact choice off (TRL's CPU default), which the speed bench
uses as its "before".

**Threads** (:func:`apply_threads`): torch sizes its pool to every core. When other processes keep some
of them busy, every parallel op waits for its descheduled thread (each op then costs ~10 ms, whatever its
size: measured 34-58 s per SFT step with 2 threads on 2 cores under a load of 8, 7-15 s with 1). So a run
uses as many threads as cores are idle when it starts (at least 1); ``SYNTH_TORCH_THREADS`` pins it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from train.errors import TrainError

THREADS_ENV = "SYNTH_TORCH_THREADS"
_COMPACT_DEVICES = ("cpu", "mps")
_original: Any = None


def use_compact_head(enabled: bool) -> bool:
    """Project the LM head at labelled positions only (``enabled``), or restore TRL's own choice.

    TRL decides per call with ``trl.trainer.utils._use_triton(device)``; that name is looked up in the
    module at call time, so replacing it there changes the decision of ``add_fused_lm_head`` only (the
    kernels keep their own reference for choosing Triton vs torch tiles). Returns False, changing
    nothing, under a TRL without that fused head (e.g. the PPO environment's TRL 1.12, whose trainers
    build full logits anyway).
    """
    global _original
    import trl.trainer.utils as trl_utils

    if _original is None:
        _original = getattr(trl_utils, "_use_triton", None)
        if _original is None or not hasattr(trl_utils, "add_fused_lm_head"):
            _original = None
            return False
    trl_utils._use_triton = _compact if enabled else _original
    return True


def _compact(device: Any) -> bool:
    return device.type in _COMPACT_DEVICES or bool(_original(device))


def compact_head_enabled() -> bool:
    """Whether the fused head currently projects labelled positions only on CPU."""
    import trl.trainer.utils as trl_utils

    return getattr(trl_utils, "_use_triton", None) is _compact


def loss_positions(labels: Any, ignore: int = -100) -> Any:
    """The boolean ``logits_to_keep`` mask (B, T): position ``i`` is kept when label ``i + 1`` counts.

    Logits computed with it come out flattened, row-major — the order of ``logits[:, :-1][labels[:, 1:]
    != ignore]`` — so they line up with ``labels[:, 1:][labels[:, 1:] != ignore]``.
    """
    import torch

    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != ignore
    return keep


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
    usable cores (affinity, cgroup quota) that are idle now (>= 75 % idle over 0.5 s), at least 1."""
    import torch

    from synth.models.local.hardware import usable_cpus

    if os.environ.get(THREADS_ENV):
        try:
            return max(1, int(os.environ[THREADS_ENV]))
        except ValueError:
            raise TrainError(
                f"${THREADS_ENV} must be a whole number of threads, got {os.environ[THREADS_ENV]!r}"
            ) from None
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
