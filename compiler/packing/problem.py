"""The packing problem's vocabulary: items, placements, the max-live bound, a checker."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tierplan.compiler.intervals import max_live_bytes, sharing_pairs


@dataclass(frozen=True, slots=True)
class Item:
    """A rectangle to place: alive at steps ``[start, end]`` (inclusive), ``size`` bytes.

    ``key`` names it (a tensor, or the root of an alias group). Sizes are already
    rounded up to the alignment, so offsets built from sums of sizes stay aligned.
    """

    key: str
    start: int
    end: int
    size: int


Placer = Callable[[list[Item]], dict[str, int]]
"""A placement heuristic: items in, offset of each item's key out."""


@dataclass(frozen=True, slots=True)
class Placement:
    """Offsets of a set of items, the peak they reach and the placer that chose them."""

    offsets: Mapping[str, int]
    peak: int
    placer: str

    @classmethod
    def of(cls, items: list[Item], offsets: Mapping[str, int], placer: str) -> Placement:
        """Wrap ``offsets`` computed for ``items``, measuring the peak."""
        peak = max((offsets[item.key] + item.size for item in items), default=0)
        return cls(offsets=offsets, peak=peak, placer=placer)


def max_live(items: list[Item]) -> int:
    """Largest total size alive at one step: no placement of ``items`` is lower."""
    return max_live_bytes((item.start, item.end, item.size) for item in items)


def check_placement(items: list[Item], offsets: Mapping[str, int]) -> list[tuple[str, str]]:
    """Pairs of item keys that share a step and a byte (empty for a valid placement;
    see :func:`~tierplan.compiler.intervals.sharing_pairs`)."""
    boxes = [(item.start, item.end, offsets[item.key], item.size) for item in items]
    return [(items[i].key, items[j].key) for i, j in sharing_pairs(boxes)]
