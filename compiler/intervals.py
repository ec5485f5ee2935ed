"""Which stored intervals overlap a query interval, without testing every stored one.

:class:`IntervalIndex` is a binary tree over integer positions ``0..size-1``. An
interval lives at the smallest node whose range holds it, and every node counts the
intervals of its subtree. A query visits the nodes that meet its range: those inside
it give all their intervals untested, those straddling one of its ends (two per
level) test theirs, and empty subtrees are skipped. Finding the ``k`` intervals that
overlap costs about ``k`` plus the intervals held at straddling nodes plus log n,
where scanning a list of all stored intervals costs their number: on long chains,
where each interval meets a few others, that is the difference between n log n and
n² over a whole sweep. Used by the plan validator (intervals of steps, and in its
overlap sweep intervals of bytes, after ranking their ends).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from typing import Generic, TypeVar

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
