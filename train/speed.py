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

**Threads** (:func:`apply_threads`): as many as cores are idle when a run starts, the rule the embedded
engine follows too (:func:`synth.models.local.threads.pick_threads`); ``SYNTH_TORCH_THREADS`` pins it.
"""

from __future__ import annotations

from typing import Any

from synth.models.local import threads
from synth.models.local.threads import THREADS_ENV, idle_cores
from train.errors import TrainError

__all__ = ["THREADS_ENV", "apply_threads", "idle_cores", "pick_threads"]
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


def pick_threads() -> int:
    """:func:`synth.models.local.threads.pick_threads`, its error as a :class:`TrainError`."""
    try:
        return threads.pick_threads()
    except ValueError as exc:
        raise TrainError(str(exc)) from None


def apply_threads() -> int:
    """:func:`synth.models.local.threads.apply_threads`, its error as a :class:`TrainError`."""
    try:
        return threads.apply_threads()
    except ValueError as exc:
        raise TrainError(str(exc)) from None
