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
:class:`~tierplan.compiler.packing.SolveReport` goes in ``context.results["pack"]``
(keyed ``"device/tier"``); the solve's progress goes to ``context.status`` (the
CLI's spinner). Option ``time_limit`` (seconds; 0, the default: none) bounds the
whole pass by the wall clock instead of the budget: each region gets an even share
of the time left, and its best placement when the share is up; a region the clock
cut short is reported ``time_limited`` (its placement depends on the machine).

A group whose members lie at positions holds less than its item: the bytes of its live
members only (slices die one by one, parts are written one by one), which is what the
plan's bound counts. When placing the groups as those shapes
(:mod:`~tierplan.compiler.packing.shapes`) reaches a lower peak than the placement of
the items, that is kept (the region's report still describes the items). When
the heuristic's peak
would exceed a tier whose buffers all came with offsets from an earlier pass
(``tiers`` proves its L2 placement), those offsets are kept instead.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

from tierplan.compiler.alias_layout import alias_positions
from tierplan.compiler.errors import PassFailure, PipelineError
from tierplan.compiler.ir import IRGraph, Tensor
from tierplan.compiler.packing import PLACERS, SOLVERS, Item, check_placement, place, solve
from tierplan.compiler.packing.clock import Deadline
from tierplan.compiler.packing.exact import Progress, region_budget
from tierplan.compiler.packing.shapes import Piece, Shape, settle, shapes_peak
from tierplan.compiler.pass_manager import Pass, PassContext, PassResult, register_pass
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


def fits_as_given(
    ir: IRGraph,
    tensors: list[Tensor],
    offsets: dict[str, int | None],
    target: Target,
    capacity: int,
) -> bool:
    """True when ``offsets`` (from an earlier pass, e.g. ``tiers``) place every tensor of a
    region within ``capacity`` without conflicts, alias groups at one offset: the
    region then keeps them rather than fail on a heuristic's higher peak."""
    if any(offset is None for offset in offsets.values()):
        return False
    items = packing_items(ir, tensors, target)
    roots = ir.alias_roots(tensors)
    inside = alias_positions(ir, tensors)
    if any((offsets[roots[t.name]] or 0) + inside[t.name] != offsets[t.name] for t in tensors):
        return False
    placed = {item.key: offsets[item.key] or 0 for item in items}
    return not check_placement(items, placed) and all(
        placed[item.key] + item.size <= capacity for item in items
    )


def _tell(context: PassContext, region: str, step: Progress) -> None:
    """Pass a solve's progress on to the front end, naming the region."""
    context.status(f"{region} {step.describe()}")


@register_pass
@dataclass(frozen=True)
class Pack(Pass):
    """Assign byte offsets: weights in a constant region, activations by heuristics and exact engines."""

    name = "pack"
    requires = frozenset({"liveness"})
    provides = frozenset({"placement"})
    invalidates = frozenset({"evaluation"})

    strategy: str = "best"
    solver: str = "auto"
    budget: float = 2.0  # deterministic units per 1,000 buffers of a region
    workers: int = 1
    time_limit: float = 0.0  # seconds for the whole pass, by the wall clock; 0: none

    def __post_init__(self) -> None:
        """Reject bad solver options when the pipeline is built, before any pass runs."""
        if self.solver not in SOLVERS:
            known = ", ".join(SOLVERS)
            raise PipelineError(f"pack: unknown solver {self.solver!r} (choose from {known})")
        if self.budget < 0 or self.workers < 1:
            raise PipelineError("pack: budget must be >= 0 and workers >= 1")
        if not (0 <= self.time_limit < math.inf):
            raise PipelineError(
                f"pack: time_limit must be >= 0 seconds (0: none), got {self.time_limit}"
            )
        if self.strategy != "best" and self.strategy not in PLACERS:
            known = ", ".join(["best", *PLACERS])
            raise PipelineError(f"pack: unknown strategy {self.strategy!r} (choose from {known})")

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        """Set ``tier`` and ``offset`` on every tensor that needs a buffer."""
        reports = context.results.setdefault(self.name, {})
        target = context.target
        regions: dict[tuple[int, str], list[Tensor]] = defaultdict(list)
        for tensor in ir.tensors():
            if tensor.needs_buffer:
                tensor.tier = tensor.tier or target.memory_tier.name
                regions[(tensor.device, tensor.tier)].append(tensor)
        notes = []
        deadline = Deadline.after(self.time_limit) if self.time_limit else None
        for index, ((device, tier_name), tensors) in enumerate(sorted(regions.items())):
            # With a time limit, each region gets an even share of the time left.
            share = deadline.within(deadline.left() / (len(regions) - index)) if deadline else None
            tier = target.tier(tier_name)
            proven = {t.name: t.offset for t in tensors}  # set by an earlier pass (tiers)
            base = 0
            for tensor in tensors:
                if tensor.kind == "weight":
                    tensor.offset = base
                    base += target.align_up(tensor.nbytes)
            activations = [t for t in tensors if t.kind != "weight"]
            items = packing_items(ir, activations, target)
            region = f"{device}/{tier_name}"
            placement, reports[region] = solve(
                items,
                place(items, self.strategy, share),
                self.solver,
                region_budget(self.budget, len(items)),
                self.workers,
                partial(_tell, context, region),
                deadline=share,
            )
            roots = ir.alias_roots(activations)
            inside = alias_positions(ir, activations)
            offsets = lowest_by_shapes(ir, activations, placement.offsets, target.alignment)
            for tensor in activations:
                tensor.offset = base + offsets[roots[tensor.name]] + inside[tensor.name]
            peak = max((t.offset or 0) + t.nbytes for t in tensors)
            if peak > tier.capacity and fits_as_given(ir, tensors, proven, target, tier.capacity):
                for tensor in tensors:
                    tensor.offset = proven[tensor.name]
                peak = max((t.offset or 0) + t.nbytes for t in tensors)
            if peak > tier.capacity:
                raise PassFailure(
                    f"does not fit: device {device} {tier_name} needs {peak} bytes "
                    f"(weights {base}), capacity {tier.capacity}"
                )
            limited = " (time-limited)" if reports[region].time_limited else ""
            notes.append(
                f"{device}/{tier_name}: {len(tensors)} buffers, peak {peak} bytes{limited}"
            )
        return PassResult(changed=True, notes=notes)
