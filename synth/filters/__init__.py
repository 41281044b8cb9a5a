"""Filters over a run's trajectories: rules, gold answers, language, exact and near dedup, an LLM judge.

A filter never deletes: a trajectory that fails one gets status ``filtered`` and a ``filter_reason``
(``KIND: why``), so counts by reason can be reported and nothing is silently dropped. ``synth filter RUN
--config filters.yaml [--filter "KIND key=value ..."]`` re-applies them to the stored records without
calling any generator; re-applying first restores every previously filtered row to ``ok``.

Modules: :mod:`~synth.filters.config` (one spec model per kind, YAML and flag parsing),
:mod:`~synth.filters.rules` (model-free checks), :mod:`~synth.filters.language` (py3langid),
:mod:`~synth.filters.judge` (the LLM-judge Role), :mod:`~synth.filters.apply` (the ``synth filter`` pass).
"""

from synth.filters.apply import FilterOptions, FilterReport, apply_filters, read_summary
from synth.filters.config import (
    FilterConfig,
    FilterConfigError,
    FilterSpec,
    build_config,
    load_config,
    parse_flag,
)
from synth.filters.rules import lookup, normalize, token_f1

__all__ = [
    "FilterConfig",
    "FilterConfigError",
    "FilterOptions",
    "FilterReport",
    "FilterSpec",
    "apply_filters",
    "build_config",
    "load_config",
    "lookup",
    "normalize",
    "parse_flag",
    "read_summary",
    "token_f1",
]
