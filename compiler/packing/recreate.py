"""Ruin and recreate: improve a greedy placement by re-placing the items above the bound.

A greedy placer commits each item once, so a structure it cannot see stays wrong:
in a transformer, a residual tensor that lives across two layers lands above the
first layer's large buffers, the next layer's residual (alive at the same steps)
above that one, and one long-lived mask on top of both, 10% over max-live. This
local search starts from ``greedy-size`` and repeats one move: take an item whose
top is above the lower bound (max-live), highest first; lift it alone, or with
every overlapping item that lives no longer than it does (a layer; never all the
items, which would only restart the greedy); put them back first fit, longest-lived first (so the residuals are placed
before the layer's large buffers and leave them a contiguous span), or largest
first; keep the first result that lowers (peak, bytes above the bound). It stops
when no item above the bound can be improved, or after :data:`MAX_MOVES` moves.

Each move costs a re-placement of the lifted items, so the placer is skipped
(it returns the ``greedy-size`` placement unchanged) above :data:`MAX_ITEMS`
items: large regions are the ones where greedy-size is already near the bound.
Deterministic: candidates are ordered by top, then by index.
"""

from __future__ import annotations

import numpy as np
from tierplan.compiler.intervals import Overlaps
from tierplan.compiler.packing.greedy import fit_offset
from tierplan.compiler.packing.problem import Item, max_live

MAX_ITEMS = 5_000
"""Largest region the search improves (above it, greedy-size is returned as is)."""

MAX_MOVES = 200
"""Accepted moves at most: each one lowers the peak or the bytes above the bound."""


def ruin_and_recreate(items: list[Item]) -> dict[str, int]:
    """Greedy-size, then re-place the items above max-live while that helps."""
    overlaps = Overlaps.of(items)
    sizes, lengths = overlaps.sizes, overlaps.ends - overlaps.starts + 1
    lows = _first_fit(overlaps, np.lexsort((overlaps.starts, -sizes)), None)
    if len(items) <= MAX_ITEMS:
        bound = max_live(items)
        for _ in range(MAX_MOVES):
            improved = _improve(overlaps, lows, lengths, bound)
            if improved is None:
                break
            lows = improved
    return {item.key: int(low) for item, low in zip(items, lows.tolist(), strict=True)}


def _score(lows: np.ndarray, sizes: np.ndarray, bound: int) -> tuple[int, int]:
    """(peak, bytes above the bound summed over items): what a move must lower."""
    tops = lows + sizes
    return int(tops.max(initial=0)), int(np.maximum(tops - bound, 0).sum())


def _improve(
    overlaps: Overlaps, lows: np.ndarray, lengths: np.ndarray, bound: int
) -> np.ndarray | None:
    """The first successful move (a better placement), or None when no move helps."""
    sizes = overlaps.sizes
    tops = lows + sizes
    score = _score(lows, sizes, bound)
    above = np.flatnonzero(tops > bound)
    for item in above[np.lexsort((above, -tops[above]))]:
        neighbours = overlaps.neighbours(int(item))
        shorter = neighbours[lengths[neighbours] <= lengths[item]]
        lifts = [np.array([item])]
        if shorter.size + 1 < len(sizes):  # lifting every item would just restart greedy
            lifts.append(np.concatenate(([item], shorter)))
        for lifted in lifts:
            keep = np.ones(len(sizes), dtype=bool)
            keep[lifted] = False
            for order in (
                np.lexsort((overlaps.starts[lifted], -sizes[lifted], -lengths[lifted])),
                np.lexsort((overlaps.starts[lifted], -lengths[lifted], -sizes[lifted])),
            ):
                candidate = _first_fit(overlaps, lifted[order], (lows, keep))
                if _score(candidate, sizes, bound) < score:
                    return candidate
    return None


def _first_fit(
    overlaps: Overlaps, order: np.ndarray, fixed: tuple[np.ndarray, np.ndarray] | None
) -> np.ndarray:
    """Offsets after placing ``order`` first fit, around the ``fixed`` (offsets, mask) items."""
    if fixed is None:
        lows, placed = (
            np.zeros(len(overlaps.sizes), dtype=np.int64),
            np.zeros(len(overlaps.sizes), dtype=bool),
        )
    else:
        lows, placed = fixed[0].copy(), fixed[1].copy()
    sizes = overlaps.sizes
    for index in order.tolist():
        neighbours = overlaps.neighbours(index)
        neighbours = neighbours[placed[neighbours]]
        lows[index] = fit_offset(lows[neighbours], sizes[neighbours], int(sizes[index]), False)
        placed[index] = True
    return lows
