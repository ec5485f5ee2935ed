"""Dynamic-allocator baselines: what a runtime memory pool would need for the same schedule.

:func:`simulate` replays a plan's allocate/free sequence (at each step, the buffers
that start there are allocated, then those that end there are freed) through one
of two runtime designs. By default the runtime is *eager*: a view shares its
input's block, every other output gets a block of its own, because an in-place
write is only safe when no later reader sees the overwrite, which is what the
planner proves (:func:`requests` with ``in_place=True`` gives the runtime the
plan's in-place writes too, for comparison). The designs:

- :class:`PoolAllocator`: a heap grown at its top, with a free list searched best fit
  (smallest block that fits, ties: lowest address), blocks rounded up to 64 bytes,
  neighbouring free blocks coalesced and a free block at the top given back;
- :class:`BuddyAllocator`: power-of-two blocks (at least 64 bytes), split in halves
  on allocation and merged with their buddy on free, lowest address first.

Each reports its footprint (the highest byte it ever used), the requested peak
(max-live of the requests: what no allocator beats) and the allocations that
failed under the capacity. A static plan knows every lifetime in advance; these
allocators see one request at a time, which is what the comparison shows.
"""

from __future__ import annotations

import bisect
import heapq
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Protocol

from tierplan.compiler.packing.problem import Item, max_live
from tierplan.compiler.plan import Plan, PlanBuffer, alias_groups
from tierplan.compiler.validate import VIEW_OPS

ALIGNMENT = 64


class Allocator(Protocol):
    """A runtime allocator: offsets for requests, a high-water mark."""

    footprint: int

    def allocate(self, size: int) -> int | None:
        """Offset of a new block of ``size`` bytes, or ``None`` if the capacity is exhausted."""

    def free(self, offset: int) -> None:
        """Give back the block at ``offset``."""


@dataclass
class PoolAllocator:
    """Best-fit free list with coalescing over a heap that grows at its top."""

    capacity: int
    footprint: int = 0
    top: int = 0
    free_offsets: list[int] = field(default_factory=list)  # sorted; never touching ``top``
    free_sizes: dict[int, int] = field(default_factory=dict)
    used: dict[int, int] = field(default_factory=dict)

    def allocate(self, size: int) -> int | None:
        """Smallest free block that fits (split), else the top of the heap."""
        size = max(ALIGNMENT, -(-size // ALIGNMENT) * ALIGNMENT)
        fitting = [(self.free_sizes[o], o) for o in self.free_offsets if self.free_sizes[o] >= size]
        if fitting:
            block, offset = min(fitting)
            self._unlist(offset)
            if block > size:
                self._list(offset + size, block - size)
        elif self.top + size <= self.capacity:
            offset, self.top = self.top, self.top + size
            self.footprint = max(self.footprint, self.top)
        else:
            return None
        self.used[offset] = size
        return offset

    def free(self, offset: int) -> None:
        """Return the block, merging it with free neighbours (and the top)."""
        size = self.used.pop(offset)
        at = bisect.bisect_left(self.free_offsets, offset)
        if at < len(self.free_offsets) and self.free_offsets[at] == offset + size:
            size += self._unlist(offset + size)
        if at and (before := self.free_offsets[at - 1]) + self.free_sizes[before] == offset:
            offset, size = before, size + self._unlist(before)
        if offset + size == self.top:
            self.top = offset
        else:
            self._list(offset, size)

    def _list(self, offset: int, size: int) -> None:
        bisect.insort(self.free_offsets, offset)
        self.free_sizes[offset] = size

    def _unlist(self, offset: int) -> int:
        self.free_offsets.remove(offset)
        return self.free_sizes.pop(offset)


@dataclass
class BuddyAllocator:
    """Power-of-two blocks split on allocation and merged with their buddy on free."""

    capacity: int
    footprint: int = 0
    free_blocks: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    roots: set[tuple[int, int]] = field(default_factory=set)  # (offset, order) never merged
    used: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Cover [0, capacity) with the largest aligned power-of-two blocks.
        offset, smallest = 0, ALIGNMENT.bit_length() - 1
        while offset + ALIGNMENT <= self.capacity:
            order = smallest
            while offset % (2 << order) == 0 and offset + (2 << order) <= self.capacity:
                order += 1
            self.free_blocks[order].add(offset)
            self.roots.add((offset, order))
            offset += 1 << order

    def allocate(self, size: int) -> int | None:
        """Lowest free block of the smallest order that fits, split down to size."""
        order = max(ALIGNMENT.bit_length() - 1, (size - 1).bit_length())
        larger = [k for k, blocks in self.free_blocks.items() if k >= order and blocks]
        if not larger:
            return None
        current = min(larger)
        offset = min(self.free_blocks[current])
        self.free_blocks[current].remove(offset)
        while current > order:
            current -= 1
            self.free_blocks[current].add(offset + (1 << current))
        self.used[offset] = order
        self.footprint = max(self.footprint, offset + (1 << order))
        return offset

    def free(self, offset: int) -> None:
        """Return the block, merging it with its buddy while the buddy is free."""
        order = self.used.pop(offset)
        while (offset, order) not in self.roots:
            buddy = offset ^ (1 << order)
            if buddy not in self.free_blocks[order]:
                break
            self.free_blocks[order].remove(buddy)
            offset, order = min(offset, buddy), order + 1
        self.free_blocks[order].add(offset)


ALLOCATORS: dict[str, type[PoolAllocator] | type[BuddyAllocator]] = {
    "pool": PoolAllocator,
    "buddy": BuddyAllocator,
}


@dataclass(frozen=True, slots=True)
class Simulation:
    """One allocator's replay of one region's requests."""

    allocator: str
    footprint: int
    requested_peak: int
    failed: int

    @property
    def fragmentation(self) -> float | None:
        """Footprint over the requested peak, minus one (0 is perfect).

        None once an allocation failed: the footprint then leaves out the requests
        that did not fit, and would read as a negative fragmentation.
        """
        if self.failed:
            return None
        return self.footprint / self.requested_peak - 1 if self.requested_peak else 0.0


def requests(plan: Plan, kinds: frozenset[str], in_place: bool = False) -> dict[str, list[Item]]:
    """Per ``"<device>/<tier>"``, one request per group of the buffers of ``kinds``: an
    :class:`~tierplan.compiler.packing.problem.Item` keyed by the group's root, alive
    over its members' steps, as large as its largest member (not rounded: each
    allocator rounds block sizes its own way).

    A view (``VIEW_OPS``) shares its input's block at run time too: it is metadata.
    An in-place write needs to know that no later reader sees the overwrite: an
    eager runtime gives every such output a block of its own (the default); with
    ``in_place`` the runtime makes the plan's in-place writes too (as one that
    reuses a block whose reference count drops to zero would).
    """
    buffers = [b for b in PlanBuffer.of_plan(plan) if b.kind in kinds]
    producer = {out: op["op_type"] for op in plan["ops"] for out in op.get("outputs", [])}
    if not in_place:
        buffers = [
            b if producer.get(b.tensor) in VIEW_OPS else replace(b, alias_of=None) for b in buffers
        ]
    roots = alias_groups(buffers)
    groups: dict[tuple[str, str], list[int]] = {}
    for b in buffers:
        root = roots[(b.region_key, b.tensor)]
        span = groups.setdefault((b.region_key, root), [b.start, b.end, b.nbytes])
        span[:] = [min(span[0], b.start), max(span[1], b.end), max(span[2], b.nbytes)]
    regions: dict[str, list[Item]] = defaultdict(list)
    for (region, root), (start, end, size) in groups.items():
        regions[region].append(Item(root, start, end, size))
    return dict(sorted(regions.items()))


def simulate(name: str, requests: list[Item], capacity: int) -> Simulation:
    """Replay ``requests`` through the allocator called ``name`` with ``capacity`` bytes."""
    allocator: Allocator = ALLOCATORS[name](capacity)
    alive: list[tuple[int, int]] = []  # heap of (end step, offset)
    failed = 0
    for request in sorted(requests, key=lambda r: r.start):
        while alive and alive[0][0] < request.start:
            allocator.free(heapq.heappop(alive)[1])
        offset = allocator.allocate(request.size)
        if offset is None:
            failed += 1
        else:
            heapq.heappush(alive, (request.end, offset))
    peak = max_live(requests)
    return Simulation(name, allocator.footprint, peak, failed)
