"""Which items are alive at a common step: the conflict graph, built by a sweep.

Sorting the items by start, item ``j`` overlaps an earlier-starting item ``i``
exactly when ``start[j] <= end[i]``; one ``searchsorted`` per item finds them all,
so the work is proportional to the number of overlapping pairs (each step's live
items pairwise), never to all pairs. The placers ask :meth:`Overlaps.neighbours`.

Where more than :data:`PAIR_LIMIT` pairs overlap (thousands of buffers alive at one
step: many graph outputs, deep nests of skip connections) the earlier-starting
neighbours are not stored but found per question, by a scan of the items that start
before (same answers, in the same order): memory stays linear, time quadratic.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tierplan.compiler.packing.problem import Item

PAIR_LIMIT = 20_000_000
"""Most overlapping pairs stored (each pair costs about 40 bytes while they are built)."""


@dataclass(frozen=True, slots=True)
class Overlaps:
    """The items as arrays (in input order) and, for each, the items sharing a step.

    In start order (``by_start``), the items overlapping item ``k`` that start later
    are the run ``k + 1 .. later_end[k] - 1``, kept implicit; the ones that start
    earlier are stored in CSR form (``earlier[pointers[i]:pointers[i + 1]]``), or
    found when asked (both ``None``) above :data:`PAIR_LIMIT` pairs.
    """

    starts: np.ndarray
    ends: np.ndarray
    sizes: np.ndarray
    by_start: np.ndarray
    position: np.ndarray  # position of item i in by_start
    later_end: np.ndarray  # indexed by position in start order
    pointers: np.ndarray | None
    earlier: np.ndarray | None

    @classmethod
    def of(cls, items: list[Item]) -> Overlaps:
        """The conflict graph of ``items`` (see :meth:`sweep`), built once per item list.

        :func:`~tierplan.compiler.packing.placers.place` runs every placer on the
        same items and each asks for their conflicts: the last graph built is kept,
        read-only, and handed out again, since where all buffers live at once (many
        graph outputs) it holds n² / 2 pairs.
        """
        return _last_built(tuple(items))

    @classmethod
    def sweep(cls, items: Sequence[Item]) -> Overlaps:
        """Build the conflict graph of ``items`` by a sweep over start steps."""
        count = len(items)
        starts = np.fromiter((item.start for item in items), dtype=np.int64, count=count)
        ends = np.fromiter((item.end for item in items), dtype=np.int64, count=count)
        sizes = np.fromiter((item.size for item in items), dtype=np.int64, count=count)
        by_start = np.argsort(starts, kind="stable")
        position = np.empty(count, dtype=np.int64)
        position[by_start] = np.arange(count)
        later_end = np.searchsorted(starts[by_start], ends[by_start], side="right")
        counts = later_end - np.arange(1, count + 1)
        if int(counts.sum()) > PAIR_LIMIT:
            return _frozen(cls(starts, ends, sizes, by_start, position, later_end, None, None))
        firsts = np.repeat(np.arange(count), counts)
        run_begin = np.repeat(np.cumsum(counts) - counts, counts)
        seconds = np.arange(int(counts.sum())) - run_begin + firsts + 1
        # CSR rows follow input order: sort the pairs by the later item's input index.
        later_items = by_start[seconds]
        order = np.argsort(later_items, kind="stable")
        pointers = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(np.bincount(later_items, minlength=count), out=pointers[1:])
        arrays = (starts, ends, sizes, by_start, position, later_end, pointers)
        return _frozen(cls(*arrays, by_start[firsts[order]]))

    def neighbours(self, index: int) -> np.ndarray:
        """Indices of the items alive at a step where item ``index`` is alive."""
        at = self.position[index]
        later = self.by_start[at + 1 : self.later_end[at]]
        if self.earlier is None or self.pointers is None:
            before = self.by_start[:at]
            return np.concatenate((before[self.ends[before] >= self.starts[index]], later))
        return np.concatenate(
            (self.earlier[self.pointers[index] : self.pointers[index + 1]], later)
        )

    def conflict_bytes(self) -> np.ndarray:
        """For each item, its own size plus the sizes of every item it overlaps."""
        in_start_order = np.concatenate([[0], np.cumsum(self.sizes[self.by_start])])
        if self.earlier is None or self.pointers is None:
            # Those starting before an item and ending before it starts do not meet it.
            by_end = np.argsort(self.ends, kind="stable")
            ended = np.concatenate([[0], np.cumsum(self.sizes[by_end])])
            gone = ended[np.searchsorted(self.ends[by_end], self.starts, side="left")]
            earlier = in_start_order[self.position] - gone
        else:
            running = np.concatenate([[0], np.cumsum(self.sizes[self.earlier])])
            earlier = running[self.pointers[1:]] - running[self.pointers[:-1]]
        later = in_start_order[self.later_end] - in_start_order[np.arange(1, len(self.sizes) + 1)]
        totals: np.ndarray = earlier + later[self.position] + self.sizes
        return totals


@functools.lru_cache(maxsize=1)
def _last_built(items: tuple[Item, ...]) -> Overlaps:
    return Overlaps.sweep(items)


def _frozen(built: Overlaps) -> Overlaps:
    """``built`` with its arrays read-only: it is handed out to every placer."""
    for field in dataclasses.fields(built):
        array = getattr(built, field.name)
        if array is not None:
            array.flags.writeable = False
    return built
