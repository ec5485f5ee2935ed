"""Intervals of steps (and of bytes): what is alive together, and how much.

The one place for the questions every part of the compiler asks about buffers
alive over inclusive step ranges:

- :func:`live_bytes_per_step`: bytes alive at each step (its maximum, :func:`max_live_bytes`,
  is the bound no placement beats);
- :class:`Overlaps`: which buffers share a step (the conflict graph the placers ask
  before any offset is chosen);
- :func:`sharing_pairs`: which placed buffers share a step and a byte (the check of a
  placement, by the packers and the plan validator alike);
- :class:`IntervalIndex`: which stored intervals overlap a query interval, while
  intervals come and go.

Both :class:`Overlaps` and :func:`sharing_pairs` start from one sweep
(:func:`_start_order`, :func:`_step_pairs`): sorted by start, interval ``j`` shares a
step with an earlier-starting interval ``i`` exactly when ``start[j] <= end[i]``, so one
``searchsorted`` per interval finds the run of later ones it meets, and the work is
proportional to the pairs sharing a step, never to all pairs.

:class:`IntervalIndex` is a binary tree over integer positions ``0..size-1``. An
interval lives at the smallest node whose range holds it, and every node counts the
intervals of its subtree. A query visits the nodes that meet its range: those inside
it give all their intervals untested, those straddling one of its ends (two per
level) test theirs, and empty subtrees are skipped. Finding the ``k`` intervals that
overlap costs about ``k`` plus the intervals held at straddling nodes plus log n,
where scanning a list of all stored intervals costs their number. Used by the plan
validator and by ``pack``'s placement of alias groups as shapes.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
from collections import defaultdict
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

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
    (sorted, so each needs a binary search); the others by the sweep over start steps
    that :class:`Overlaps` makes, each pair sharing a step then tested on its bytes.

    >>> list(sharing_pairs([(0, 3, 0, 8), (1, 2, 4, 8), (3, 3, 8, 8)]))
    [(0, 1)]
    """
    last = max((box[1] for box in boxes), default=0) if last_step is None else last_step
    placed = [index for index, box in enumerate(boxes) if box[3] > 0]
    whole = sorted(
        (i for i in placed if boxes[i][0] <= 0 and boxes[i][1] >= last), key=lambda i: boxes[i][2]
    )
    whole_set = set(whole)
    partial = [i for i in placed if i not in whole_set]
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
    if not partial:
        return
    array = np.array([boxes[i] for i in partial], dtype=np.int64).reshape(-1, 4)
    by_start, later_end = _start_order(array[:, 0], array[:, 1])
    bottoms = array[by_start, 2]
    tops = bottoms + array[by_start, 3]
    names = np.array(partial, dtype=np.int64)[by_start]
    for firsts, seconds in _step_pairs(later_end):
        meet = (bottoms[firsts] < tops[seconds]) & (bottoms[seconds] < tops[firsts])
        yield from zip(names[firsts[meet]].tolist(), names[seconds[meet]].tolist(), strict=True)


PAIR_CHUNK = 1 << 20
"""Pairs sharing a step that :func:`_step_pairs` hands out at once (a bound on its memory)."""


def _start_order(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The intervals in start order (``by_start``) and, at each position ``k`` of that
    order, the end of the run of later-starting intervals that meet interval ``k``
    (``later_end[k]``: positions ``k + 1 .. later_end[k] - 1``)."""
    by_start = np.argsort(starts, kind="stable")
    later_end = np.searchsorted(starts[by_start], ends[by_start], side="right")
    # An interval that ends before it starts (a hostile plan's) meets no later one.
    return by_start, np.maximum(later_end, np.arange(1, len(starts) + 1))


def _step_pairs(
    later_end: np.ndarray, limit: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every pair ``(k, j)`` of start-order positions sharing a step (``k < j``), as two
    arrays per chunk of about ``limit`` (default :data:`PAIR_CHUNK`) pairs, in order of
    ``k`` then ``j``."""
    limit = PAIR_CHUNK if limit is None else limit
    count = len(later_end)
    counts = later_end - np.arange(1, count + 1)
    ends = np.cumsum(counts)
    first = 0
    while first < count:
        # Whole positions only: a chunk ends where its pairs reach the limit (at least one).
        done = int(ends[first - 1]) if first else 0
        last = max(int(np.searchsorted(ends, done + limit, side="right")), first + 1)
        last = min(last, count)
        runs = counts[first:last]
        firsts = np.repeat(np.arange(first, last), runs)
        run_begin = np.repeat(np.cumsum(runs) - runs, runs)
        yield firsts, np.arange(len(firsts)) - run_begin + firsts + 1
        first = last


class Lifetime(Protocol):
    """What :class:`Overlaps` reads of an interval (a packing item, for one)."""

    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def size(self) -> int: ...


PAIR_LIMIT = 20_000_000
"""Most overlapping pairs :class:`Overlaps` stores (each costs about 40 bytes while built)."""


@dataclass(frozen=True, slots=True)
class Overlaps:
    """The intervals as arrays (in input order) and, for each, the intervals sharing a step.

    In start order (``by_start``), the intervals overlapping interval ``k`` that start
    later are the run ``k + 1 .. later_end[k] - 1``, kept implicit; the ones that start
    earlier are stored in CSR form (``earlier[pointers[i]:pointers[i + 1]]``), or found
    when asked (both ``None``) above :data:`PAIR_LIMIT` pairs (thousands of buffers
    alive at one step: many graph outputs, deep nests of skip connections), by a scan
    of those that start before: same answers in the same order, memory linear, time
    quadratic.
    """

    starts: np.ndarray
    ends: np.ndarray
    sizes: np.ndarray
    by_start: np.ndarray
    position: np.ndarray  # position of interval i in by_start
    later_end: np.ndarray  # indexed by position in start order
    pointers: np.ndarray | None
    earlier: np.ndarray | None

    @classmethod
    def of(cls, lifetimes: Sequence[HashableLifetime]) -> Overlaps:
        """The conflict graph of ``lifetimes`` (see :meth:`sweep`), built once per list.

        The packing placers run on the same items in turn and each asks for their
        conflicts: the last graph built is kept, read-only, and handed out again, since
        where all buffers live at once (many graph outputs) it holds n² / 2 pairs.
        """
        return _last_built(tuple(lifetimes))

    @classmethod
    def sweep(cls, lifetimes: Sequence[Lifetime]) -> Overlaps:
        """Build the conflict graph of ``lifetimes`` by the sweep over start steps."""
        count = len(lifetimes)
        starts = np.fromiter((item.start for item in lifetimes), dtype=np.int64, count=count)
        ends = np.fromiter((item.end for item in lifetimes), dtype=np.int64, count=count)
        sizes = np.fromiter((item.size for item in lifetimes), dtype=np.int64, count=count)
        by_start, later_end = _start_order(starts, ends)
        position = np.empty(count, dtype=np.int64)
        position[by_start] = np.arange(count)
        pairs = int((later_end - np.arange(1, count + 1)).sum())
        if pairs > PAIR_LIMIT:
            return _frozen(cls(starts, ends, sizes, by_start, position, later_end, None, None))
        firsts, seconds = next(_step_pairs(later_end, max(pairs, 1)), (np.arange(0), np.arange(0)))
        # CSR rows follow input order: sort the pairs by the later interval's input index.
        later_items = by_start[seconds]
        order = np.argsort(later_items, kind="stable")
        pointers = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(np.bincount(later_items, minlength=count), out=pointers[1:])
        arrays = (starts, ends, sizes, by_start, position, later_end, pointers)
        return _frozen(cls(*arrays, by_start[firsts[order]]))

    def neighbours(self, index: int) -> np.ndarray:
        """Indices of the intervals alive at a step where interval ``index`` is alive."""
        at = self.position[index]
        later = self.by_start[at + 1 : self.later_end[at]]
        if self.earlier is None or self.pointers is None:
            before = self.by_start[:at]
            return np.concatenate((before[self.ends[before] >= self.starts[index]], later))
        return np.concatenate(
            (self.earlier[self.pointers[index] : self.pointers[index + 1]], later)
        )

    def conflict_bytes(self) -> np.ndarray:
        """For each interval, its own size plus the sizes of every interval it overlaps."""
        in_start_order = np.concatenate([[0], np.cumsum(self.sizes[self.by_start])])
        if self.earlier is None or self.pointers is None:
            # Those starting before an interval and ending before it starts do not meet it.
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


class HashableLifetime(Lifetime, Hashable, Protocol):
    """A :class:`Lifetime` that can key the cache of :meth:`Overlaps.of`."""


@functools.lru_cache(maxsize=1)
def _last_built(lifetimes: tuple[HashableLifetime, ...]) -> Overlaps:
    return Overlaps.sweep(lifetimes)


def _frozen(built: Overlaps) -> Overlaps:
    """``built`` with its arrays read-only: it is handed out to every placer."""
    for field in dataclasses.fields(built):
        array = getattr(built, field.name)
        if array is not None:
            array.flags.writeable = False
    return built
