"""Lowering the peak of a large placement by local moves at the items that reach it.

CP-SAT windows (:func:`.cpsat.minimize_windows`) re-place the items nearest in time to
an item at the peak. On a compiler's trace that item is often a small long-lived
buffer (the production-like 20k trace: 64 bytes beside 4,441 others) and no window
around it is small enough. Yet what holds it up is one step: its *busiest* step (the
most bytes alive), where the bytes below it must leave no hole for the peak to come
down to max-live, while on such a trace the other steps have a percent or more to
spare. :func:`lower_peak` therefore works in two halves (of the units, or of the time):

- from a **fresh start**: the items alive at the busiest step of all stacked without
  a hole, the others first fit around them, largest first (on the 20k trace 1.3%
  above max-live, but with the step that decides the peak already tight);
- then from the better of that and the placement it was given,

each time with the same local search: take the items above max-live, highest first,
and try on each in turn moves of growing reach, keeping the first that lowers the
score (peak, then bytes above max-live summed over the items):

1. **relocate**: put the item lower, at each of the :data:`RELOCATE_CANDIDATES`
   offsets (0 or a neighbour's top) where the items it would overlap weigh least
   (bytes times steps), and re-place those first fit, longest-lived first;
2. **close a hole**: at the item's busiest step, move the items above a hole in that
   step's column down by the hole's size, and re-place first fit the items they then
   overlap (none of them alive at that step), in three orders;
3. **re-solve a band**: CP-SAT re-places the items alive within :data:`BAND_STEPS`
   steps of the busiest step that lie above a height ``h`` (a window in offset space:
   everything below ``h``, and the rest of the timeline, stays fixed), first with
   ``h`` a 256th of the peak below the item, then twice as deep, up to the whole
   height or :data:`BAND_LIMIT` free items.

An accepted move gives every item its moves back; the search stops when no item above
max-live has one left, or when its half is spent: deterministic units (first-fit work,
:data:`FIT_WORK_PER_UNIT` per unit, and CP-SAT's deterministic units), or, given a
:class:`~.clock.Deadline`, the wall clock. The 20k trace reaches max-live in a few
seconds this way; from skyline-size's placement alone (1.0067) the moves stalled at
1.0011 after 55 s, on a hole of 14 units at the busiest step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import overload

import numpy as np
from tierplan.compiler.intervals import Overlaps
from tierplan.compiler.packing import cpsat
from tierplan.compiler.packing.clock import Deadline
from tierplan.compiler.packing.greedy import CLOCK_ITEMS, fit_offset
from tierplan.compiler.packing.problem import Item, max_live

RELOCATE_CANDIDATES = 30
"""Lower offsets a relocation tries for one item, the lightest to clear first."""

BAND_STEPS = 10
"""A band holds the items alive within this many steps of the busiest step."""

BAND_LEVELS = 9
"""Band depths tried per item: a 256th of the peak, doubling up to the whole peak."""

BAND_LIMIT = 400
"""Most free items in a band's model: a deeper band is not tried."""

BAND_UNITS = 0.5
"""Units one band's CP-SAT model may spend."""

BAND_SECONDS = 3.0
"""Seconds one band's CP-SAT model may take in a time-limited solve."""

FIT_WORK_PER_UNIT = 15_000_000
"""First-fit work per budget unit: each re-placed item costs its neighbours, plus
:data:`FIT_OVERHEAD` (re-placing the 20k trace's items, 4.7M of work, took 0.3 s on a
shared core at load 10: a unit is about a second there, as the other engines' are)."""

FIT_OVERHEAD = 100
"""Work charged per re-placed item besides its neighbours."""


@dataclass(frozen=True, slots=True)
class Lowered:
    """The offsets found, the moves accepted (in either half), the bands solved (and
    their free items), and whether a wall clock stopped a band's model."""

    offsets: dict[str, int]
    moves: int
    bands: int
    band_items: int
    timed_out: bool


def lower_peak(
    items: list[Item],
    known: dict[str, int],
    floor: int,
    budget: float,
    workers: int,
    on_move: Callable[[int], None] | None = None,
    deadline: Deadline | None = None,
) -> Lowered:
    """Lower the peak of ``known`` within ``budget`` units (with a ``deadline``: until
    it) towards max-live, or ``floor`` if higher (a peak the caller accepts); never
    above ``known``'s score. ``on_move`` gets the peak after each move."""
    search = _Search(items, known, floor, workers)
    given_lows, given_score = search.lows, search.score
    if given_score[0] <= search.bound:
        return Lowered(dict(known), 0, 0, 0, False)
    # First from a fresh start, its busiest step packed without a hole, for half of
    # the units or time; then on from the better of that and ``known``.
    first = deadline.within(deadline.left() / 2) if deadline is not None else None
    search.left = budget / 2
    fresh = search.column_first(first)
    if fresh is not None:
        search.restart(fresh, search.left, first)
        search.run(lambda peak: on_move(peak) if on_move and peak < given_score[0] else None)
        if search.score > given_score:
            search.lows, search.score = given_lows, given_score
    search.restart(search.lows, budget / 2 + max(search.left, 0), deadline)
    search.run(on_move)
    offsets = {item.key: int(low) for item, low in zip(items, search.lows.tolist(), strict=True)}
    return Lowered(offsets, search.moves, search.bands, search.band_items, search.timed_out)


class _Search:
    """The placement being improved, as arrays in item order, and what it has spent."""

    def __init__(
        self,
        items: list[Item],
        known: dict[str, int],
        floor: int,
        workers: int,
    ) -> None:
        self.items, self.workers = items, workers
        self.deadline: Deadline | None = None
        self.overlaps = Overlaps.of(items)
        self.sizes, self.starts, self.ends = (
            self.overlaps.sizes,
            self.overlaps.starts,
            self.overlaps.ends,
        )
        self.lengths = self.ends - self.starts + 1
        self.lows = np.array([known[item.key] for item in items], dtype=np.int64)
        self.bound = max(max_live(items), floor)
        self.score = self._score(self.lows)
        self.points, self.live = _live_at_starts(self.starts, self.ends, self.sizes)
        self.left = 0.0
        self.moves = self.bands = self.band_items = 0
        self.timed_out = False

    def restart(self, lows: np.ndarray, budget: float, deadline: Deadline | None) -> None:
        """Go on from ``lows`` with ``budget`` units, or until ``deadline`` if given."""
        self.lows, self.score = lows, self._score(lows)
        self.left = budget if deadline is None else float("inf")
        self.deadline = deadline

    def run(self, on_move: Callable[[int], None] | None) -> None:
        """Moves at the items above the bound, highest first (see the module docstring),
        until none is left or the budget is spent."""
        ladders: dict[int, int] = {}  # item -> moves tried since the last accepted move
        rungs = 2 + BAND_LEVELS
        while not self.spent():
            tops = self.lows + self.sizes
            above = np.flatnonzero(tops > self.bound)
            above = above[np.lexsort((above, -tops[above]))]
            picked = next((i for i in above.tolist() if ladders.get(i, 0) < rungs), None)
            if picked is None:
                break
            rung = ladders.get(picked, 0)
            if rung == 0:
                found = self.relocate(picked)
            elif rung == 1:
                found = self.close_hole(picked)
            else:
                found = self.band(picked, rung - 2)
            if found is None:
                ladders[picked] = rung + 1
                continue
            self.lows, self.score = found, self._score(found)
            self.moves += 1
            ladders.clear()
            if on_move is not None:
                on_move(self.score[0])

    def column_first(self, deadline: Deadline | None) -> np.ndarray | None:
        """A fresh start: the items alive at the busiest step stacked without a hole
        (the earliest born lowest, then the last to die), the others first fit around
        them, largest first; None if ``deadline`` passes first."""
        step = int(self.points[int(np.argmax(self.live))])
        in_column = (self.starts <= step) & (self.ends >= step)
        column = np.flatnonzero(in_column)
        column = column[np.lexsort((column, -self.ends[column], self.starts[column]))]
        lows = np.zeros(len(self.sizes), dtype=np.int64)
        lows[column] = np.cumsum(self.sizes[column]) - self.sizes[column]
        rest = np.flatnonzero(~in_column)
        order = np.lexsort((rest, self.starts[rest], -self.sizes[rest]))
        return self.refit(lows, rest, order, deadline)

    def spent(self) -> bool:
        """Whether the units, or the time to the deadline, are spent."""
        return self.left <= 0 or (self.deadline is not None and self.deadline.passed())

    def _score(self, lows: np.ndarray) -> tuple[int, int]:
        tops = lows + self.sizes
        return int(tops.max(initial=0)), int(np.maximum(tops - self.bound, 0).sum())

    def better(self, lows: np.ndarray) -> np.ndarray | None:
        """``lows`` if they lower the score, else None."""
        return lows if self._score(lows) < self.score else None

    @overload
    def refit(self, lows: np.ndarray, lifted: np.ndarray, order: np.ndarray) -> np.ndarray: ...

    @overload
    def refit(
        self, lows: np.ndarray, lifted: np.ndarray, order: np.ndarray, deadline: Deadline | None
    ) -> np.ndarray | None: ...

    def refit(
        self,
        lows: np.ndarray,
        lifted: np.ndarray,
        order: np.ndarray,
        deadline: Deadline | None = None,
    ) -> np.ndarray | None:
        """``lows`` with the ``lifted`` items re-placed first fit in ``order`` (indices
        into ``lifted``) around all the others, charging the work; None if ``deadline``
        (looked at every :data:`CLOCK_ITEMS` items) passes first."""
        lows = lows.copy()
        placed = np.ones(len(self.sizes), dtype=bool)
        placed[lifted] = False
        work = 0
        for count, index in enumerate(lifted[order].tolist()):
            if deadline is not None and count % CLOCK_ITEMS == 0 and deadline.passed():
                return None
            neighbours = self.overlaps.neighbours(index)
            work += FIT_OVERHEAD + len(neighbours)
            neighbours = neighbours[placed[neighbours]]
            lows[index] = fit_offset(
                lows[neighbours], self.sizes[neighbours], int(self.sizes[index]), False
            )
            placed[index] = True
        self.left -= work / FIT_WORK_PER_UNIT
        return lows

    def relocate(self, item: int) -> np.ndarray | None:
        """Move 1 (see the module docstring)."""
        lows, sizes, size = self.lows, self.sizes, int(self.sizes[item])
        neighbours = self.overlaps.neighbours(item)
        bottoms, tops = lows[neighbours], lows[neighbours] + sizes[neighbours]
        weights = sizes[neighbours] * self.lengths[neighbours]
        candidates = np.unique(np.concatenate(([0], tops)))
        candidates = candidates[candidates < lows[item]]
        # The weight an item at offset c overlaps: all neighbours reaching above c,
        # less those lying wholly above its top.
        by_top, by_bottom = np.argsort(tops), np.argsort(bottoms)
        above_sums = np.concatenate(([0], np.cumsum(weights[by_top])))
        beyond_sums = np.concatenate(([0], np.cumsum(weights[by_bottom])))
        reaching = above_sums[-1] - above_sums[np.searchsorted(tops[by_top], candidates, "right")]
        beyond = (
            beyond_sums[-1]
            - beyond_sums[np.searchsorted(bottoms[by_bottom], candidates + size, "left")]
        )
        costs = reaching - beyond
        for offset in candidates[np.lexsort((candidates, costs))][:RELOCATE_CANDIDATES].tolist():
            if self.spent():
                break
            lifted = neighbours[(bottoms < offset + size) & (tops > offset)]
            moved = lows.copy()
            moved[item] = offset
            order = np.lexsort((lifted, -sizes[lifted], -self.lengths[lifted]))
            found = self.better(self.refit(moved, lifted, order))
            if found is not None:
                return found
        return None

    def busiest_step(self, item: int) -> int:
        """The step of ``item``'s life with the most bytes alive (the first such)."""
        first = int(np.searchsorted(self.points, self.starts[item]))
        last = int(np.searchsorted(self.points, self.ends[item], "right"))
        return int(self.points[first + int(np.argmax(self.live[first:last]))])

    def close_hole(self, item: int) -> np.ndarray | None:
        """Move 2 (see the module docstring)."""
        lows, sizes, lengths = self.lows, self.sizes, self.lengths
        step = self.busiest_step(item)
        column = np.flatnonzero((self.starts <= step) & (self.ends >= step))
        column = column[np.lexsort((column, lows[column]))]
        reach = np.maximum.accumulate(lows[column] + sizes[column])
        gaps = lows[column][1:] - reach[:-1]
        in_column = np.zeros(len(sizes), dtype=bool)
        in_column[column] = True
        for hole in np.flatnonzero(gaps > 0)[::-1].tolist():
            if self.spent():
                break
            shifted = column[hole + 1 :]
            moved = lows.copy()
            moved[shifted] -= int(gaps[hole])
            hit = [np.zeros(0, dtype=np.int64)]
            for index in shifted.tolist():
                neighbours = self.overlaps.neighbours(index)
                neighbours = neighbours[~in_column[neighbours]]
                low, high = moved[index], moved[index] + sizes[index]
                hit.append(
                    neighbours[
                        (moved[neighbours] < high) & (moved[neighbours] + sizes[neighbours] > low)
                    ]
                )
            lifted = np.unique(np.concatenate(hit))
            for order in (
                np.lexsort((lifted, -sizes[lifted], -lengths[lifted])),
                np.lexsort((lifted, -lengths[lifted], -sizes[lifted])),
                np.lexsort((lifted, moved[lifted])),
            ):
                found = self.better(self.refit(moved, lifted, order))
                if found is not None:
                    return found
        return None

    def band(self, item: int, level: int) -> np.ndarray | None:
        """Move 3 (see the module docstring), at the ``level``-th depth."""
        lows, sizes, starts, ends = self.lows, self.sizes, self.starts, self.ends
        tops = lows + sizes
        peak = int(tops.max())
        base = max(int(lows[item]) - (peak << level) // (1 << (BAND_LEVELS - 1)), 0)
        step = self.busiest_step(item)
        free = np.flatnonzero(
            (starts <= step + BAND_STEPS) & (ends >= step - BAND_STEPS) & (lows >= base)
        )
        if len(free) > BAND_LIMIT:
            return None
        chosen = np.zeros(len(sizes), dtype=bool)
        chosen[free] = True
        first, last = int(starts[free].min()), int(ends[free].max())
        fixed = np.flatnonzero(~chosen & (starts <= last) & (ends >= first) & (tops > base))
        # The band's model starts at its base: fixed items crossing it keep their part above.
        bottoms = np.maximum(lows[fixed], base)
        boxes = [
            (Item(self.items[i].key, int(starts[i]), int(ends[i]), int(top - bottom)), int(bottom))
            for i, bottom, top in zip(
                fixed.tolist(),
                (bottoms - base).tolist(),
                (tops[fixed] - base).tolist(),
                strict=True,
            )
        ]
        known = {self.items[i].key: int(lows[i]) - base for i in free.tolist()}
        seconds = self.deadline is not None
        share = min(BAND_SECONDS if seconds else BAND_UNITS, max(self.left, 0.01))
        until = self.deadline.within(share) if self.deadline is not None else None
        answer = cpsat.solve_window(
            [self.items[i] for i in free.tolist()],
            boxes,
            known,
            self.bound - base,
            share,
            self.workers,
            deadline=until,
        )
        self.bands += 1
        self.band_items += len(free)
        self.timed_out |= answer.timed_out
        if not seconds:
            self.left -= max(answer.spent, cpsat.ROUND_UNITS)
        if not answer.solved:
            return None
        moved = lows.copy()
        moved[free] = [answer.offsets[self.items[i].key] + base for i in free.tolist()]
        return self.better(moved)


def _live_at_starts(
    starts: np.ndarray, ends: np.ndarray, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct start steps and the bytes alive at each: the busiest step of any
    item's life is one of them (bytes alive only grow where an item starts)."""
    points = np.unique(starts)
    by_start, by_end = np.argsort(starts, kind="stable"), np.argsort(ends, kind="stable")
    started = np.concatenate(([0], np.cumsum(sizes[by_start])))
    ended = np.concatenate(([0], np.cumsum(sizes[by_end])))
    live = (
        started[np.searchsorted(starts[by_start], points, "right")]
        - ended[np.searchsorted(ends[by_end], points, "left")]
    )
    return points, live
