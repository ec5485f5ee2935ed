"""Skyline placers: fill the lowest free level first, as best-fit strip packers do.

A greedy placer (:mod:`~tierplan.compiler.packing.greedy`) takes items in a fixed order
and drops each wherever it fits; a structure that only shows once the others are down
(a long-lived buffer that must stay clear of a layer's peak) is then missed. The
skyline placers work bottom-up instead, in the spirit of Burke, Kendall & Whitwell's
best-fit heuristic for strip packing (2004), on MiniMalloc's canonical placements (every
item rests at 0 or on the top of another): the placed items form a *skyline* (per
step, the highest top), and each turn looks at its lowest level among the steps where
an item is still to be placed, and the run of such steps at that level around it (a
*segment*). The first item in the placer's priority that lies within the segment sits
on it; if none does, the segment is raised to its lower neighbour (the bytes below
are lost there) and merges with it. Every item is placed once, at its final offset.

Priorities: ``skyline-length``, longest-lived first (then larger); ``skyline-size``,
larger first (then longer-lived); ties by start step, then input order. A lifetime is
counted in the items it sees born (distinct start steps), not in schedule steps: a
buffer alive over many steps in which nothing new is allocated constrains no more
than a short one (on the T5 region, schedule steps put it at 6.2% above). Longest-lived
first packs the T5 encoder's L2 region at max-live, where greedy-by-breadth is 11.6%
above it: the long-lived residuals go down first, side by side, and each layer's
short-lived buffers fill the levels above them.

A turn scans the items that start in its segment, so a region whose skyline stays
flat over thousands of steps costs time quadratic in its items: :func:`skyline` takes
a :class:`~tierplan.compiler.packing.clock.Deadline` and stops with
:class:`OutOfTime` once it has passed (checked every :data:`CLOCK_TURNS` turns).
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable

import numpy as np
from tierplan.compiler.packing.clock import Deadline
from tierplan.compiler.packing.problem import Item

CLOCK_TURNS = 256
"""Turns between two looks at the clock of a placement given a deadline."""

Priority = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, ...]]
"""Sort keys (smaller first, the most significant first) from the items' sizes and
lifetimes (in distinct start steps)."""


class OutOfTime(Exception):
    """The deadline passed before the skyline placement was complete."""


def by_length(sizes: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """Longest-lived first, then larger."""
    return -lengths, -sizes


def by_size(sizes: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """Larger first, then longer-lived."""
    return -sizes, -lengths


def skyline(
    items: list[Item], priority: Priority, deadline: Deadline | None = None
) -> dict[str, int]:
    """Offsets of ``items`` placed bottom-up on the skyline, ``priority`` first among the
    items that fit the lowest segment; :class:`OutOfTime` if ``deadline`` passes first."""
    if not items:
        return {}
    starts = np.array([item.start for item in items], dtype=np.int64)
    ends = np.array([item.end for item in items], dtype=np.int64)
    sizes = np.array([item.size for item in items], dtype=np.int64)
    # Two closed lifetimes overlap exactly when the later start lies in both: steps are
    # compressed to the distinct start steps.
    points = np.unique(starts)
    first = np.searchsorted(points, starts)
    last = np.searchsorted(points, ends, side="right") - 1
    keys = priority(sizes, last - first + 1)
    rank = np.empty(len(items), dtype=np.int64)
    rank[np.lexsort((np.arange(len(items)), starts, *reversed(keys)))] = np.arange(len(items))
    state = _Skyline(first.tolist(), last.tolist(), sizes.tolist(), rank.tolist(), len(points))
    lows = state.run(deadline)
    return {item.key: low for item, low in zip(items, lows, strict=True)}


class _Skyline:
    """The placement in progress, on compressed steps."""

    def __init__(
        self, first: list[int], last: list[int], sizes: list[int], rank: list[int], steps: int
    ) -> None:
        self.first, self.last, self.sizes, self.rank = first, last, sizes, rank
        live = [0] * (steps + 1)
        for low, high, size in zip(first, last, sizes, strict=True):
            live[low] += size
            live[high + 1] -= size
        running = 0
        for step in range(steps + 1):
            running += live[step]
            live[step] = running
        self.live = live  # per step, bytes of the items still to place alive there
        self.sky = [0] * steps
        self.steps = steps
        self.by_first = sorted(range(len(sizes)), key=lambda i: (first[i], i))
        self.firsts = [first[i] for i in self.by_first]
        self.placed = [False] * len(sizes)

    def run(self, deadline: Deadline | None) -> list[int]:
        """Offsets of every item, turn by turn from the lowest level up."""
        sky, live = self.sky, self.live
        lows = [0] * len(self.sizes)
        # Lowest (level, step) first; entries go stale as the skyline rises.
        heap = [(0, step) for step in range(self.steps)]
        for index, size in enumerate(self.sizes):
            self.placed[index] = size == 0  # no byte to place: it stays at 0, out of the way
        left, turns = self.placed.count(False), 0
        while left:
            turns += 1
            if deadline is not None and turns % CLOCK_TURNS == 0 and deadline.passed():
                raise OutOfTime
            level, step = heapq.heappop(heap)
            if sky[step] != level or live[step] == 0:
                continue
            low, high = self._segment(step, level)
            chosen = self._choose(low, high)
            if chosen is None:
                self._raise(low, high, heap)
                continue
            lows[chosen] = level
            self.placed[chosen] = True
            left -= 1
            self._cover(chosen, level + self.sizes[chosen], heap)
            if sky[step] == level:  # the item lies beside this step: it stays lowest
                heapq.heappush(heap, (level, step))
        return lows

    def _cover(self, chosen: int, top: int, heap: list[tuple[int, int]]) -> None:
        """Put item ``chosen`` on the skyline, up to ``top``. The heap keeps one entry
        per run of steps at a level still in use (not one per step: a long-lived item
        would push thousands): the runs the item makes, and those beside it, which it
        may have cut off from their entry."""
        sky, live, size = self.sky, self.live, self.sizes[chosen]
        first, last = self.first[chosen], self.last[chosen]
        in_use = False
        for step in range(first, last + 1):
            sky[step] = top
            live[step] -= size
            if live[step] > 0 and not in_use:
                heapq.heappush(heap, (top, step))
            in_use = live[step] > 0
        for side in (first - 1, last + 1):
            if 0 <= side < self.steps and live[side] > 0:
                heapq.heappush(heap, (sky[side], side))

    def _segment(self, step: int, level: int) -> tuple[int, int]:
        """The run ``[low, high)`` of steps around ``step`` at ``level`` still in use."""
        sky, live = self.sky, self.live
        low = step
        while low > 0 and sky[low - 1] == level and live[low - 1] > 0:
            low -= 1
        high = step + 1
        while high < self.steps and sky[high] == level and live[high] > 0:
            high += 1
        return low, high

    def _choose(self, low: int, high: int) -> int | None:
        """The unplaced item first in priority among those within ``[low, high)``."""
        best, best_rank = None, len(self.rank)
        by_first, placed, last, rank = self.by_first, self.placed, self.last, self.rank
        begin = bisect.bisect_left(self.firsts, low)
        for position in range(begin, bisect.bisect_left(self.firsts, high, begin)):
            index = by_first[position]
            if not placed[index] and last[index] < high and rank[index] < best_rank:
                best, best_rank = index, rank[index]
        return best

    def _raise(self, low: int, high: int, heap: list[tuple[int, int]]) -> None:
        """Lift the segment ``[low, high)`` to its lower neighbour in use: no item lies
        within it, so some item still to place crosses one of its ends."""
        sky, live = self.sky, self.live
        neighbours = [sky[low - 1]] if low > 0 and live[low - 1] > 0 else []
        if high < self.steps and live[high] > 0:
            neighbours.append(sky[high])
        level = min(neighbours)
        for step in range(low, high):
            sky[step] = level
        heapq.heappush(heap, (level, low))  # one entry for the whole run, as in _cover


def skyline_by_length(items: list[Item]) -> dict[str, int]:
    """Skyline placement, longest-lived first."""
    return skyline(items, by_length)


def skyline_by_size(items: list[Item]) -> dict[str, int]:
    """Skyline placement, larger first."""
    return skyline(items, by_size)
