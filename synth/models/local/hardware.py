"""What this machine offers the local backend, training and evaluation: bf16 units, usable CPUs, dtypes.

Kept apart from :mod:`synth.models.local.engine` (which needs xgrammar for constrained decoding) so that
training and evaluation, which only ask these questions, import nothing more than torch: the PPO
environment, for one, has no xgrammar.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

DTYPE_ENV = "SYNTH_LOCAL_DTYPE"

_DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
}


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 units (``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo).

    Without them bf16 matmuls are emulated and can be slower than fp32.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def usable_cpus() -> int:
    """CPUs this process may really use: affinity mask and cgroup CPU quota (containers).

    torch sizes its pool from the host's cores; inside a 2-CPU container on a 64-core host that
    oversubscribes badly, so the pool is capped at this number.
    """
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text(encoding="utf-8").split()[:2]
        if quota != "max":
            count = min(count, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def resolve_dtype(name: str | None, device: str = "cpu") -> torch.dtype:
    """``name`` (or ``$SYNTH_LOCAL_DTYPE``) -> torch dtype; ``None``/``auto`` picks by hardware."""
    name = name or os.environ.get(DTYPE_ENV) or "auto"
    if name == "auto":
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    try:
        return _DTYPES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use one of auto, {', '.join(_DTYPES)}") from None
