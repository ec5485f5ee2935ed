"""``pack``: give every buffer a byte offset in its device's tier.

Reads: ``Tensor.start``/``end`` (liveness), ``alias_of``, ``device``, ``tier``.
Writes: ``Tensor.offset`` of every tensor that needs a buffer, and ``Tensor.tier``
(the target's memory tier, DDR, for tensors no earlier pass placed).

Per device and tier, weights go first into a constant region at the bottom (they
live for the whole schedule), in model order. Activations are packed above it by
greedy-by-size: largest first, each at the lowest aligned offset where it meets no
buffer alive at an overlapping step. A tensor that aliases another (``alias_of``)
is packed with it as one item. Offsets and the space each item takes are rounded
up to the target's alignment.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from tierplan.compiler.errors import PassFailure
from tierplan.compiler.ir import IRGraph, Tensor
from tierplan.compiler.pass_manager import Pass, PassContext, PassResult, register_pass
from tierplan.compiler.target import Target


@dataclass(frozen=True, slots=True)
class Item:
    """Buffers packed as one rectangle: steps ``[start, end]`` by ``size`` aligned bytes."""

    tensors: tuple[str, ...]
    start: int
    end: int
    size: int


def alias_root(ir: IRGraph, tensor: Tensor) -> str:
    """The tensor at the end of the ``alias_of`` chain (itself if it aliases nothing)."""
    seen = {tensor.name}
    while tensor.alias_of is not None and tensor.alias_of not in seen:
        seen.add(tensor.alias_of)
        tensor = ir.tensor(tensor.alias_of)
    return tensor.name


def pack_items(items: list[Item], base: int = 0) -> dict[str, int]:
    """Greedy-by-size: offsets (relative to 0, starting at ``base``) of each item's tensors.

    Items are taken largest first (ties: earlier start, then name), each placed at
    the lowest offset where it overlaps no already-placed item in both steps and
    bytes. Sizes must already be aligned; offsets then stay aligned too.
    """
    order = sorted(items, key=lambda item: (-item.size, item.start, item.tensors[0]))
    count = len(order)
    starts = np.empty(count, dtype=np.int64)
    ends = np.empty(count, dtype=np.int64)
    lows = np.empty(count, dtype=np.int64)
    highs = np.empty(count, dtype=np.int64)
    offsets: dict[str, int] = {}
    for placed, item in enumerate(order):
        live = (starts[:placed] <= item.end) & (ends[:placed] >= item.start)
        offset = _lowest_gap(lows[:placed][live], highs[:placed][live], item.size, base)
        starts[placed], ends[placed] = item.start, item.end
        lows[placed], highs[placed] = offset, offset + item.size
        for name in item.tensors:
            offsets[name] = offset
    return offsets


def _lowest_gap(lows: np.ndarray, highs: np.ndarray, size: int, base: int) -> int:
    """Lowest offset >= ``base`` where ``size`` bytes fit between the busy ranges."""
    candidate = base
    for index in np.argsort(lows, kind="stable"):
        low, high = int(lows[index]), int(highs[index])
        if low - candidate >= size:
            break
        candidate = max(candidate, high)
    return candidate


def packing_items(ir: IRGraph, tensors: list[Tensor], target: Target) -> list[Item]:
    """One item per alias group: the union of its members' steps, the largest member's bytes."""
    groups: dict[str, list[Tensor]] = defaultdict(list)
    for tensor in tensors:
        groups[alias_root(ir, tensor)].append(tensor)
    return [
        Item(
            tensors=tuple(t.name for t in members),
            start=min(t.start or 0 for t in members),
            end=max(t.end or 0 for t in members),
            size=target.align_up(max(t.nbytes for t in members)),
        )
        for members in groups.values()
    ]


@register_pass
@dataclass(frozen=True)
class Pack(Pass):
    """Assign byte offsets: weights in a constant region, activations greedy-by-size."""

    name = "pack"
    requires = frozenset({"liveness"})
    provides = frozenset({"placement"})
    invalidates = frozenset({"evaluation"})

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        """Set ``tier`` and ``offset`` on every tensor that needs a buffer."""
        target = context.target
        regions: dict[tuple[int, str], list[Tensor]] = defaultdict(list)
        for tensor in ir.tensors():
            if tensor.needs_buffer:
                tensor.tier = tensor.tier or target.memory_tier.name
                regions[(tensor.device, tensor.tier)].append(tensor)
        notes = []
        for (device, tier_name), tensors in sorted(regions.items()):
            tier = target.tier(tier_name)
            base = 0
            for tensor in tensors:
                if tensor.kind == "weight":
                    tensor.offset = base
                    base += target.align_up(tensor.nbytes)
            activations = [t for t in tensors if t.kind != "weight"]
            offsets = pack_items(packing_items(ir, activations, target), base)
            for tensor in activations:
                tensor.offset = offsets[tensor.name]
            peak = max((t.offset or 0) + t.nbytes for t in tensors)
            if peak > tier.capacity:
                raise PassFailure(
                    f"does not fit: device {device} {tier_name} needs {peak} bytes "
                    f"(weights {base}), capacity {tier.capacity}"
                )
            notes.append(f"{device}/{tier_name}: {len(tensors)} buffers, peak {peak} bytes")
        return PassResult(changed=True, notes=notes)
