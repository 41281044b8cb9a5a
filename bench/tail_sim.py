"""How much of the call limit rows made of chains of calls can use as the input runs out (no engine).

A discrete-event simulation of ``rows`` rows of ``calls`` sequential calls each, ``in_flight`` rows at a time,
``slots`` calls at once served first come first served, each call taking a uniform 150-250 ms. It prints
the run's length against the ideal ``rows * calls * 0.2 / slots`` (every slot busy until the end). The gap
is the end of the input: the last rows to start run the rest of their chains alone, so slots go idle.
The CoEvol case of ``throughput.py`` is sized by it (one round, 8 calls a row, over 800 rows).

    python bench/tail_sim.py    # 300 x 25 (CoEvol, three rounds), 800 x 9 and 800 x 8 calls, 64 slots
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics


def simulate(rows: int, calls: int, slots: int, in_flight: int, seed: int) -> float:
    """Seconds until the last call of the last row ends."""
    rng = random.Random(seed)
    now, started, busy, order = 0.0, 0, 0, 0
    left: dict[int, int] = {}
    waiting: list[tuple[int, int]] = []  # (arrival order, row): first come, first served
    ending: list[tuple[float, int]] = []  # (end time, row) of calls in flight

    def wait(row: int) -> None:
        nonlocal order
        heapq.heappush(waiting, (order, row))
        order += 1

    def start_row() -> None:
        nonlocal started
        left[started] = calls
        wait(started)
        started += 1

    def dispatch() -> None:
        nonlocal busy
        while busy < slots and waiting:
            _, row = heapq.heappop(waiting)
            busy += 1
            heapq.heappush(ending, (now + rng.uniform(0.15, 0.25), row))

    for _ in range(min(in_flight, rows)):
        start_row()
    dispatch()
    while ending:
        now, row = heapq.heappop(ending)
        busy -= 1
        left[row] -= 1
        if left[row]:
            wait(row)
        else:
            del left[row]
            if started < rows:
                start_row()
        dispatch()
    return now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--in-flight", type=int, default=128, help="rows in flight (the bench: 2 x slots)")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    for rows, calls in ((300, 25), (800, 9), (800, 8)):
        runs = [simulate(rows, calls, args.slots, args.in_flight, seed) for seed in range(args.seeds)]
        ideal = rows * calls * 0.2 / args.slots
        took = statistics.mean(runs)
        share = ideal / took
        print(f"{rows} rows x {calls} calls: {took:.2f} s, ideal {ideal:.2f} s: {share:.3f} of the limit")


if __name__ == "__main__":
    main()
