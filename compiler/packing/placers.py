"""The placement heuristics by name, and :func:`place`, which runs one or all of them."""

from __future__ import annotations

import time

from tierplan.compiler.packing.clock import Deadline
from tierplan.compiler.packing.greedy import (
    best_fit_by_conflicts,
    first_fit_in_schedule_order,
    greedy_by_breadth,
    greedy_by_size,
)
from tierplan.compiler.packing.problem import Item, Placement, Placer
from tierplan.compiler.packing.recreate import ruin_and_recreate

PLACERS: dict[str, Placer] = {
    "greedy-size": greedy_by_size,
    "greedy-breadth": greedy_by_breadth,
    "best-fit-conflicts": best_fit_by_conflicts,
    "first-fit-schedule": first_fit_in_schedule_order,
    "ruin-recreate": ruin_and_recreate,
}


def place(items: list[Item], strategy: str = "best", deadline: Deadline | None = None) -> Placement:
    """Place ``items`` with the named placer, or with every placer for ``"best"``.

    With a ``deadline``, the placers run in registry order (the first one always) while
    the time left exceeds the longest one so far: a placer cannot stop halfway.
    """
    if strategy != "best":
        return Placement.of(items, PLACERS[strategy](items), strategy)
    results: list[Placement] = []
    longest = 0.0
    for name, placer in PLACERS.items():
        if results and deadline is not None and deadline.left() <= longest:
            break
        began = time.perf_counter()
        results.append(Placement.of(items, placer(items), name))
        longest = max(longest, time.perf_counter() - began)
    return min(results, key=lambda placement: placement.peak)
