"""Intervals of steps (and of bytes): what is alive together, and how much.

The one place for three questions every part of the compiler asks about buffers
alive over inclusive step ranges:

- :func:`live_bytes_per_step`: bytes alive at each step (its maximum, :func:`max_live_bytes`,
  is the bound no placement beats);
- :func:`sharing_pairs`: which placed buffers share a step and a byte (the check of a
  placement, by the packers and the plan validator alike);
- :class:`IntervalIndex`: which stored intervals overlap a query interval.

:class:`IntervalIndex` is a binary tree over integer positions ``0..size-1``. An
interval lives at the smallest node whose range holds it, and every node counts the
intervals of its subtree. A query visits the nodes that meet its range: those inside
it give all their intervals untested, those straddling one of its ends (two per
level) test theirs, and empty subtrees are skipped. Finding the ``k`` intervals that
overlap costs about ``k`` plus the intervals held at straddling nodes plus log n,
where scanning a list of all stored intervals costs their number: on long chains,
where each interval meets a few others, that is the difference between n log n and
n² over a whole sweep. Used by the plan validator (intervals of steps) and by
:func:`sharing_pairs` (intervals of bytes, after ranking their ends).
"""

from __future__ import annotations

import bisect
import heapq
from collections import defaultdict
from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar

import numpy as np

Item = TypeVar("Item", bound=Hashable)


class IntervalIndex(Generic[Item]):
    """Items with an inclusive interval ``[low, high]`` of positions in ``0..size-1``.

    >>> index: IntervalIndex[str] = IntervalIndex(10)
    >>> index.add("a", 0, 3); index.add("b", 5, 9); index.add("c", 3, 5)
    >>> sorted(index.overlapping(4, 6)), sorted(index.overlapping(0, 2))
    (['b', 'c'], ['a'])
    >>> index.remove("c", 3, 5); sorted(index.overlapping(3, 5))
    ['a', 'b']
    """

    def __init__(self, size: int) -> None:
        self.leaves = 1 << max(size - 1, 0).bit_length()
        self.held: dict[int, dict[Item, tuple[int, int]]] = defaultdict(dict)
        self.below = [0] * (2 * self.leaves)

    def _node(self, low: int, high: int) -> int:
        node, other = low + self.leaves, high + self.leaves
        while node != other:
            node, other = node >> 1, other >> 1
        return node

    def _count(self, node: int, change: int) -> None:
        while node:
            self.below[node] += change
            node >>= 1

    def add(self, item: Item, low: int, high: int) -> None:
        """Store ``item`` with the interval ``[low, high]`` (``low <= high``)."""
        node = self._node(low, high)
        self.held[node][item] = (low, high)
        self._count(node, 1)

    def remove(self, item: Item, low: int, high: int) -> None:
        """Forget ``item``, stored with the interval ``[low, high]``."""
        node = self._node(low, high)
        del self.held[node][item]
        self._count(node, -1)

    def overlapping(self, low: int, high: int) -> list[Item]:
        """The items whose interval shares a position with ``[low, high]``."""
        found: list[Item] = []
        stack = [(1, 0, self.leaves - 1)]
        while stack:
            node, first, last = stack.pop()
            if not self.below[node] or last < low or high < first:
                continue
            held = self.held.get(node)
            if held and low <= first and last <= high:
                found += held
            elif held:
                found += [item for item, (a, b) in held.items() if a <= high and low <= b]
            if first < last:
                middle = (first + last) // 2
                stack += [(2 * node, first, middle), (2 * node + 1, middle + 1, last)]
        return found


Box = tuple[int, int, int, int]
"""``(start, end, offset, size)``: bytes ``[offset, offset + size)`` over steps ``[start, end]``."""


def live_bytes_per_step(
    ranges: Iterable[tuple[int, int, int]] | np.ndarray, steps: int | None = None
) -> np.ndarray:
    """Bytes alive at each step, for inclusive ``(start, end, bytes)`` ranges (tuples, or
    the rows of an ``n x 3`` integer array).

    ``steps`` is the curve's length (default: up to the last range's end).

    >>> live_bytes_per_step([(0, 1, 10), (1, 2, 5), (2, 3, 7)]).tolist()
    [10, 15, 12, 7]
    """
    rows = ranges if isinstance(ranges, np.ndarray) else np.array(list(ranges), dtype=np.int64)
    array = rows.astype(np.int64, copy=False).reshape(-1, 3)
    reach = int(array[:, 1].max()) + 1 if len(array) else 0
    steps = reach if steps is None else steps
    delta = np.zeros(max(steps, reach) + 1, dtype=np.int64)
    np.add.at(delta, array[:, 0], array[:, 2])
    np.add.at(delta, array[:, 1] + 1, -array[:, 2])
    return np.cumsum(delta)[:steps]


def max_live_bytes(ranges: Iterable[tuple[int, int, int]] | np.ndarray) -> int:
    """Largest total of bytes alive at one step, for inclusive ``(start, end, bytes)`` ranges.

    >>> max_live_bytes([(0, 1, 10), (1, 2, 5), (2, 3, 7)])
    15
    """
    curve = live_bytes_per_step(ranges)
    return int(curve.max()) if len(curve) else 0


def sharing_pairs(boxes: Sequence[Box], last_step: int | None = None) -> Iterator[tuple[int, int]]:
    """Pairs of indices of ``boxes`` that share a step and a byte (boxes of no bytes share none).

    None are found exactly when no two boxes meet; boxes alive for the whole schedule
    (from step 0 to ``last_step``, by default the last end) are each reported with one
    box they meet rather than with all. Those are compared through their offsets
    (sorted, so each needs a binary search); the others by a sweep over steps, in the
    order a scan of the boxes live at each start would find them.

    >>> list(sharing_pairs([(0, 3, 0, 8), (1, 2, 4, 8), (3, 3, 8, 8)]))
    [(0, 1)]
    """
    last = max((box[1] for box in boxes), default=0) if last_step is None else last_step
    placed = [index for index, box in enumerate(boxes) if box[3] > 0]
    whole = sorted(
        (i for i in placed if boxes[i][0] <= 0 and boxes[i][1] >= last), key=lambda i: boxes[i][2]
    )
    partial = sorted(
        (i for i in placed if not (boxes[i][0] <= 0 and boxes[i][1] >= last)),
        key=lambda i: boxes[i][0],
    )
    reach, previous = -1, -1
    for i in whole:
        offset, size = boxes[i][2:]
        if previous >= 0 and offset < reach:
            yield previous, i
        if offset + size > reach:
            reach, previous = offset + size, i
    lows = [boxes[i][2] for i in whole]
    for i in partial:
        offset, size = boxes[i][2:]
        # Whole-schedule boxes that start below i's end; with disjoint ones (any overlap
        # among them is reported above) only a run just before it can meet i.
        for at in range(bisect.bisect_left(lows, offset + size) - 1, -1, -1):
            other = whole[at]
            if boxes[other][2] + boxes[other][3] <= offset:
                break
            yield other, i

    # A sweep over start steps with the live boxes indexed by their bytes (ends
    # ranked), so each box meets only those sharing a byte, not all live ones.
    def byte_range(i: int) -> tuple[int, int]:
        return boxes[i][2], boxes[i][2] + boxes[i][3] - 1

    ranks = {x: r for r, x in enumerate(sorted({x for i in partial for x in byte_range(i)}))}
    live: IntervalIndex[int] = IntervalIndex(len(ranks))
    leaving: list[tuple[int, int]] = []  # (end, position in `partial`) of the live ones
    for position, i in enumerate(partial):
        while leaving and leaving[0][0] < boxes[i][0]:
            gone = heapq.heappop(leaving)[1]
            live.remove(gone, *(ranks[x] for x in byte_range(partial[gone])))
        for earlier in sorted(live.overlapping(*(ranks[x] for x in byte_range(i)))):
            yield partial[earlier], i
        live.add(position, *(ranks[x] for x in byte_range(i)))
        heapq.heappush(leaving, (boxes[i][1], position))
