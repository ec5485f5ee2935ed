"""Greedy placers: take the items in some order, put each into a gap left by the others.

Every placer here is an *order* plus a *fit*. Each item, in turn, looks only at the
already-placed items alive at one of its steps (the conflict graph of
:class:`~tierplan.compiler.intervals.Overlaps`, not all pairs) and takes either the
lowest gap between them that is large enough (first fit) or the smallest such gap
(best fit; ties: the lower one), or else the top of the pile. The orders:

- ``greedy-size``: largest first (TFLite's and Pisarchyk & Lee's baseline), first fit.
- ``greedy-breadth``: Pisarchyk & Lee (2020) "greedy by breadth": steps by decreasing
  breadth (the bytes alive there), and at each step its items largest first; an item
  is placed at the widest step it lives through; best fit.
- ``best-fit-conflicts``: the items whose conflicts weigh most (own bytes plus the
  bytes of every item they overlap) first; best fit.
- ``first-fit-schedule``: by start step (largest first within a step), first fit:
  what a bump allocator that reuses holes would do at run time.

Ties are broken by start step and then by key, so every placer is deterministic.

Given a :class:`~tierplan.compiler.packing.clock.Deadline`, :func:`place_in_order` looks
at the clock every :data:`CLOCK_ITEMS` items and, once it has passed, stacks the items
not yet placed above the others, each on its own bytes: a valid placement at once,
far above the bound, but a time-limited solve needs *some* placement in time.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tierplan.compiler.intervals import Overlaps, live_bytes_per_step
from tierplan.compiler.packing.clock import Deadline
from tierplan.compiler.packing.problem import Item

Order = Callable[[Overlaps], np.ndarray]
"""A placement order: the item indices, in the order they are placed."""

CLOCK_ITEMS = 256
"""Items placed between two looks at the clock of a placement given a deadline."""


def place_in_order(
    items: list[Item], order: Order, best_fit: bool, deadline: Deadline | None = None
) -> dict[str, int]:
    """Offsets of ``items`` placed one by one in ``order``, first fit or best fit; once
    ``deadline`` (if given) has passed, the rest stacked above them."""
    overlaps = Overlaps.of(items)
    lows = np.zeros(len(items), dtype=np.int64)
    placed = np.zeros(len(items), dtype=bool)
    sizes = overlaps.sizes
    for count, index in enumerate(order(overlaps).tolist()):
        if deadline is not None and count % CLOCK_ITEMS == 0 and deadline.passed():
            rest = np.flatnonzero(~placed)
            top = int((lows[placed] + sizes[placed]).max(initial=0))
            lows[rest] = top + np.cumsum(sizes[rest]) - sizes[rest]
            break
        neighbours = overlaps.neighbours(index)
        neighbours = neighbours[placed[neighbours]]
        lows[index] = fit_offset(lows[neighbours], sizes[neighbours], int(sizes[index]), best_fit)
        placed[index] = True
    return {item.key: int(low) for item, low in zip(items, lows.tolist(), strict=True)}


def fit_offset(lows: np.ndarray, sizes: np.ndarray, size: int, best_fit: bool) -> int:
    """Offset for ``size`` bytes among busy ranges ``[lows, lows + sizes)``."""
    if lows.size == 0:
        return 0
    by_low = np.argsort(lows, kind="stable")
    sorted_lows = lows[by_low]
    reach = np.maximum.accumulate(sorted_lows + sizes[by_low])
    gap_starts = np.concatenate(([0], reach[:-1]))
    lengths = sorted_lows - gap_starts
    fitting = np.flatnonzero(lengths >= size)
    if fitting.size == 0:
        return int(reach[-1])
    pick = fitting[np.argmin(lengths[fitting])] if best_fit else fitting[0]
    return int(gap_starts[pick])


def greedy_by_size(items: list[Item], deadline: Deadline | None = None) -> dict[str, int]:
    """Largest first, each at the lowest gap that fits (the rest stacked after ``deadline``)."""
    return place_in_order(
        items, lambda o: np.lexsort((o.starts, -o.sizes)), best_fit=False, deadline=deadline
    )


def greedy_by_breadth(items: list[Item]) -> dict[str, int]:
    """Pisarchyk & Lee's greedy by breadth: widest steps first, best fit."""

    def order(o: Overlaps) -> np.ndarray:
        widest = _widest_step_rank(o.starts, o.ends, o.sizes)
        return np.lexsort((o.starts, -o.sizes, widest))

    return place_in_order(items, order, best_fit=True)


def best_fit_by_conflicts(items: list[Item]) -> dict[str, int]:
    """Heaviest conflicts first, each in the smallest gap that fits."""
    return place_in_order(
        items, lambda o: np.lexsort((o.starts, -o.sizes, -o.conflict_bytes())), best_fit=True
    )


def first_fit_in_schedule_order(items: list[Item]) -> dict[str, int]:
    """By start step, largest first within a step, each at the lowest gap that fits."""
    return place_in_order(items, lambda o: np.lexsort((-o.sizes, o.starts)), best_fit=False)


def _widest_step_rank(starts: np.ndarray, ends: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """For each item, the rank (widest step first, ties: earlier) of the widest step in
    its range: a range-minimum query over a sparse table of step ranks."""
    if starts.size == 0:
        return starts
    steps = int(ends.max()) + 1
    breadth = live_bytes_per_step(np.column_stack((starts, ends, sizes)), steps)
    rank = np.empty(steps, dtype=np.int64)
    rank[np.lexsort((np.arange(steps), -breadth))] = np.arange(steps)
    table = [rank]
    while (1 << len(table)) <= steps:
        half = 1 << (len(table) - 1)
        table.append(np.minimum(table[-1][:-half], table[-1][half:]))
    level = np.frexp((ends - starts + 1).astype(np.float64))[1] - 1  # floor(log2(length))
    result = np.empty_like(starts)
    for depth in np.unique(level):
        chosen = level == depth
        row = table[depth]
        width = 1 << int(depth)
        result[chosen] = np.minimum(row[starts[chosen]], row[ends[chosen] - width + 1])
    return result
