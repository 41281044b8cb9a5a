"""The runner quiets the cycle collector while rows run (``synth.engine.quiet_gc``), then restores."""

from __future__ import annotations

import gc

import pytest

from synth.engine.quiet_gc import GC_YOUNG_THRESHOLD, quiet_gc


def test_runs_quiet_the_garbage_collector_while_they_run_and_restore_it() -> None:
    if gc.get_freeze_count():
        pytest.skip("something else froze the heap")
    before = gc.get_threshold()
    with quiet_gc():
        frozen = gc.get_freeze_count()
        assert frozen > 0 and gc.get_threshold()[0] >= GC_YOUNG_THRESHOLD
        with quiet_gc():  # a nested (or concurrent) run shares the setting
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen and gc.get_threshold()[0] >= GC_YOUNG_THRESHOLD
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
