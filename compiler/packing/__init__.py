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
from tierplan.compiler.packing.placers import PLACERS, place
from tierplan.compiler.packing.problem import (
    Item,
    Placement,
    Placer,
    check_placement,
    max_live,
)

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
