"""The placement heuristics by name, and :func:`place`, which runs one or all of them."""

from __future__ import annotations

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
    """Place ``items`` with the named placer, or with every placer for ``"best"`` (with
    a ``deadline``: those in registry order until it passes, at least the first)."""
    if strategy != "best":
        return Placement.of(items, PLACERS[strategy](items), strategy)
    results: list[Placement] = []
    for name, placer in PLACERS.items():
        if results and deadline is not None and deadline.passed():
            break
        results.append(Placement.of(items, placer(items), name))
    return min(results, key=lambda placement: placement.peak)
