"""``pack``: give every buffer a byte offset in its device's tier.

Reads: ``Tensor.start``/``end`` (liveness), ``alias_of``, ``device``, ``tier``.
Writes: ``Tensor.offset`` of every tensor that needs a buffer, and ``Tensor.tier``
(the target's memory tier, DDR, for tensors no earlier pass placed).

Per device and tier, weights go first into a constant region at the bottom (they
live for the whole schedule), in model order. Activations are packed above it by
the placers of :mod:`tierplan.compiler.packing` (option ``strategy``: one placer's
name, or ``best`` to run them all and keep the lowest peak). A tensor that aliases
another (``alias_of``) is packed with it as one item, whose steps span every member's
and which each member takes at its byte position (a slice view inside its source, a
concat part inside its Concat's output). Offsets and the space each
item takes are rounded up to the target's alignment. Option ``solver`` then improves
the heuristic's placement with an exact engine (``greedy``: none; ``search``,
``cpsat`` or ``auto``, within ``budget`` deterministic units per 1,000 buffers of the
region (at least ``budget``) on ``workers`` threads); each region's
:class:`~tierplan.compiler.packing.SolveReport` goes in the :class:`PackResult`
(``context.result(Pack)``, keyed ``"device/tier"``); the solve's progress goes to ``context.status`` (the
CLI's spinner). Option ``time_limit`` (seconds; 0, the default: none) bounds the
whole pass by the wall clock instead of the budget: each region gets an even share
of the time left, and its best placement when the share is up; a region the clock
cut short is reported ``time_limited`` (its placement depends on the machine). A
region whose placement exceeds its tier falls back to the best heuristic placement
(:func:`~tierplan.compiler.packing.place`, ``best``, no deadline) when that fits:
``tiers`` checked its L2 choice with that placement, so a ``strategy`` other than
``best`` or a time limit cannot make the choice fail.

A group whose members lie at positions holds less than its item: the bytes of its live
members only (slices die one by one, parts are written one by one), which is what the
plan's bound counts. When placing the groups as those shapes
(:mod:`~tierplan.compiler.packing.shapes`) reaches a lower peak than the placement of
the items, that is kept (the region's report still describes the items).

Ensures: every buffer has a tier and an offset, within its tier's capacity (and,
under ``--verify-each``, that no two buffers alive at a common step share a byte).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Literal

from tierplan.compiler.alias_layout import alias_positions
from tierplan.compiler.errors import PassFailure
from tierplan.compiler.intervals import sharing_pairs
from tierplan.compiler.ir import IRGraph, Tensor
from tierplan.compiler.packing import (
    Item,
    Placement,
    SolveReport,
    place,
    solve,
)
from tierplan.compiler.packing.clock import Deadline
from tierplan.compiler.packing.exact import Progress, region_budget
from tierplan.compiler.packing.shapes import Piece, Shape, settle, shapes_peak
from tierplan.compiler.pass_manager import (
    Bounds,
    PassContext,
    PassResult,
    PostconditionError,
    ResultPass,
    register_pass,
)
from tierplan.compiler.target import Target


def packing_items(ir: IRGraph, tensors: list[Tensor], target: Target) -> list[Item]:
    """One item per alias group, keyed by its root: the union of its members' steps,
    the largest member's bytes."""
    return [
        Item(
            key=root,
            start=min(t.start or 0 for t in members),
            end=max(t.end or 0 for t in members),
            size=target.align_up(max(t.nbytes for t in members)),
        )
        for root, members in ir.alias_groups(tensors).items()
    ]


def _take(
    ir: IRGraph,
    activations: list[Tensor],
    tensors: list[Tensor],
    placement: Placement,
    base: int,
    alignment: int,
) -> int:
    """Give ``activations`` their offsets in ``placement`` (or its groups settled as
    shapes, when that is lower) above ``base`` (the weights); return the peak of the
    region's ``tensors``."""
    roots = ir.alias_roots(activations)
    inside = alias_positions(ir, activations)
    offsets = lowest_by_shapes(ir, activations, placement.offsets, alignment)
    for tensor in activations:
        tensor.offset = base + offsets[roots[tensor.name]] + inside[tensor.name]
    return max((t.offset or 0) + t.nbytes for t in tensors)


def group_shapes(ir: IRGraph, tensors: list[Tensor]) -> list[Shape]:
    """One shape per alias group, keyed by its root: each member's bytes at its position."""
    inside = alias_positions(ir, tensors)
    return [
        Shape.of(
            root,
            (Piece(inside[t.name], t.start or 0, t.end or 0, t.nbytes) for t in members),
        )
        for root, members in ir.alias_groups(tensors).items()
    ]


def lowest_by_shapes(
    ir: IRGraph, tensors: list[Tensor], offsets: Mapping[str, int], alignment: int
) -> Mapping[str, int]:
    """``offsets`` (of each alias group's root), or the groups settled as shapes when
    that reaches a lower peak: in the order of ``offsets``, of their first step (as an
    allocator at run time would), or largest first."""
    shapes = group_shapes(ir, tensors)
    if all(shape.rectangular for shape in shapes):
        return offsets
    first = {s.key: min(p.start for p in s.pieces) for s in shapes}
    by_offset = sorted(shapes, key=lambda s: (offsets[s.key], s.key))
    by_start = sorted(shapes, key=lambda s: (first[s.key], -s.height, s.key))
    by_size = sorted(shapes, key=lambda s: (-s.height, first[s.key], s.key))
    best, peak = offsets, shapes_peak(shapes, offsets)
    for order in (by_offset, by_start, by_size):
        settled = settle(shapes, [s.key for s in order], alignment)
        if shapes_peak(shapes, settled) < peak:
            best, peak = settled, shapes_peak(shapes, settled)
    return best


def _tell(context: PassContext, region: str, step: Progress) -> None:
    """Pass a solve's progress on to the front end, naming the region."""
    context.status(f"{region} {step.describe()}")


Strategy = Literal[
    "best",
    "greedy-size",
    "greedy-breadth",
    "best-fit-conflicts",
    "first-fit-schedule",
    "ruin-recreate",
    "skyline-length",
    "skyline-size",
]
"""``best`` (every placer, the lowest peak kept) or one placer of
:data:`~tierplan.compiler.packing.PLACERS`."""

Solver = Literal["greedy", "search", "cpsat", "auto"]
"""The exact engine after the heuristics: :data:`~tierplan.compiler.packing.SOLVERS`."""


@dataclass(frozen=True, slots=True)
class PackResult:
    """What ``pack`` proved per region (``"device/tier"``): the exact engines' reports."""

    regions: dict[str, SolveReport] = field(default_factory=dict)


def _regions(ir: IRGraph) -> dict[tuple[int, str], list[Tensor]]:
    """The buffers of each (device, tier), once ``pack`` gave every buffer a tier."""
    regions: dict[tuple[int, str], list[Tensor]] = defaultdict(list)
    for tensor in ir.tensors():
        if tensor.needs_buffer and tensor.tier is not None:
            regions[(tensor.device, tensor.tier)].append(tensor)
    return regions


@register_pass
@dataclass(frozen=True)
class Pack(ResultPass[PackResult]):
    """Assign byte offsets: weights in a constant region, activations by heuristics and exact engines."""

    name = "pack"
    requires = frozenset({"liveness"})
    provides = frozenset({"placement"})
    invalidates = frozenset({"evaluation"})

    strategy: Strategy = "best"
    solver: Solver = "auto"
    budget: Annotated[float, Bounds(0)] = 2.0  # deterministic units per 1,000 buffers of a region
    workers: Annotated[int, Bounds(1)] = 1
    time_limit: Annotated[float, Bounds(0)] = 0.0  # seconds for the whole pass, wall clock; 0: none

    def ensures(self, ir: IRGraph, context: PassContext) -> None:
        """Every buffer has a tier and an offset, and ends within its tier's capacity."""
        for tensor in ir.tensors():
            if not tensor.needs_buffer:
                continue
            if tensor.tier is None or tensor.offset is None:
                raise PostconditionError(f"buffer {tensor.name!r} has no tier or no offset")
            capacity = context.target.tier(tensor.tier).capacity
            if not 0 <= tensor.offset <= capacity - tensor.nbytes:
                raise PostconditionError(
                    f"buffer {tensor.name!r} at offset {tensor.offset} ({tensor.nbytes} bytes) "
                    f"is outside {tensor.tier}'s {capacity} bytes"
                )

    def ensures_costly(self, ir: IRGraph, context: PassContext) -> None:
        """No two buffers of different alias groups alive at a common step share a byte."""
        for (device, tier), tensors in sorted(_regions(ir).items()):
            roots = ir.alias_roots(tensors)
            boxes = [(t.start or 0, t.end or 0, t.offset or 0, t.nbytes) for t in tensors]
            for first, second in sharing_pairs(boxes):
                if roots[tensors[first].name] != roots[tensors[second].name]:
                    raise PostconditionError(
                        f"buffers {tensors[first].name!r} and {tensors[second].name!r} of "
                        f"{device}/{tier} overlap"
                    )

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        """Set ``tier`` and ``offset`` on every tensor that needs a buffer."""
        reports = PackResult()
        context.set_result(self, reports)
        target = context.target
        for tensor in ir.tensors():
            if tensor.needs_buffer:
                tensor.tier = tensor.tier or target.memory_tier.name
        regions = _regions(ir)
        notes = []
        deadline = Deadline.after(self.time_limit) if self.time_limit else None
        for index, ((device, tier_name), tensors) in enumerate(sorted(regions.items())):
            # With a time limit, each region gets an even share of the time left.
            share = deadline.within(deadline.left() / (len(regions) - index)) if deadline else None
            tier = target.tier(tier_name)
            base = 0
            for tensor in tensors:
                if tensor.kind == "weight":
                    tensor.offset = base
                    base += target.align_up(tensor.nbytes)
            activations = [t for t in tensors if t.kind != "weight"]
            items = packing_items(ir, activations, target)
            region = f"{device}/{tier_name}"
            placement, reports.regions[region] = solve(
                items,
                place(items, self.strategy, share),
                self.solver,
                region_budget(self.budget, len(items)),
                self.workers,
                partial(_tell, context, region),
                deadline=share,
            )
            peak = _take(ir, activations, tensors, placement, base, target.alignment)
            if peak > tier.capacity:
                fallback = place(items)  # the placement `tiers` checked its choice with
                if fallback.peak < placement.peak:
                    peak = _take(ir, activations, tensors, fallback, base, target.alignment)
                    notes.append(f"{region}: above the tier, fell back to {fallback.placer}")
            if peak > tier.capacity:
                raise PassFailure(
                    f"does not fit: device {device} {tier_name} needs {peak} bytes "
                    f"(weights {base}), capacity {tier.capacity}"
                )
            limited = " (time-limited)" if reports.regions[region].time_limited else ""
            notes.append(
                f"{device}/{tier_name}: {len(tensors)} buffers, peak {peak} bytes{limited}"
            )
        return PassResult(changed=True, notes=notes)
