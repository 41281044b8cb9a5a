"""The progress bar's rows/s is rows finished over elapsed time, even when rows finish in bursts."""

from __future__ import annotations

import io

from rich.console import Console

from synth.engine.session import _progress


def test_rows_per_second_is_finished_rows_over_elapsed_time() -> None:
    clock = [100.0]
    progress = _progress(Console(file=io.StringIO()))
    progress.get_time = lambda: clock[0]  # type: ignore[method-assign]
    task_id = progress.add_task("run", total=4, ok=0, failed=0, filtered=0, tokens=0)
    clock[0] = 110.0
    progress.advance(task_id)
    clock[0] = 110.001  # the second row of the same model batch, a millisecond later
    progress.advance(task_id)
    rate_column = progress.columns[4]
    text = rate_column.render(progress.tasks[0]).plain
    assert text == "0.20 rows/s"  # 2 rows in 10 s, not 1 row per millisecond
