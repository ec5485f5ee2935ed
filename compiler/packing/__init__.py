"""Offset assignment: place buffers with fixed lifetimes in one address space.

Each :class:`Item` is a rectangle, its steps fixed on one axis and its (aligned)
bytes on the other; a placer chooses every item's offset so that items alive at a
common step never share a byte, and tries to keep the peak (the highest byte used)
low. No placement beats :func:`max_live` for the same items.

Placers are registered in :data:`PLACERS` by name; :func:`place` runs one, or all
of them (``"best"``) keeping the lowest peak (ties: the first in registry order).
:func:`solve` then improves a placement with the exact engines (:data:`SOLVERS`:
the MiniMalloc-style search, CP-SAT, or ``auto``, both) and reports the proven bound.
"""

from __future__ import annotations

from tierplan.compiler.packing.exact import SOLVERS, SolveReport, solve
from tierplan.compiler.packing.greedy import (
    best_fit_by_conflicts,
    first_fit_in_schedule_order,
    greedy_by_breadth,
    greedy_by_size,
)
from tierplan.compiler.packing.problem import (
    Item,
    Placement,
    Placer,
    check_placement,
    max_live,
)
from tierplan.compiler.packing.recreate import ruin_and_recreate

PLACERS: dict[str, Placer] = {
    "greedy-size": greedy_by_size,
    "greedy-breadth": greedy_by_breadth,
    "best-fit-conflicts": best_fit_by_conflicts,
    "first-fit-schedule": first_fit_in_schedule_order,
    "ruin-recreate": ruin_and_recreate,
}


def place(items: list[Item], strategy: str = "best") -> Placement:
    """Place ``items`` with the named placer, or with every placer for ``"best"``."""
    if strategy != "best":
        return Placement.of(items, PLACERS[strategy](items), strategy)
    results = [Placement.of(items, placer(items), name) for name, placer in PLACERS.items()]
    return min(results, key=lambda placement: placement.peak)


__all__ = [
    "PLACERS",
    "SOLVERS",
    "Item",
    "Placement",
    "Placer",
    "SolveReport",
    "check_placement",
    "max_live",
    "place",
    "solve",
]
