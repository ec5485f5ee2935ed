"""``tiers``: choose L2 or DDR for every activation, maximizing the traffic served from L2.

Reads: ``Tensor.start``/``end`` (liveness), ``alias_of``, ``device``, each
operator's traffic per tensor (``Operator.tiles`` where tiled, else each tensor's
bytes once: :func:`tierplan.compiler.cost.moved_bytes`), the target's tiers.
Writes: ``Tensor.tier`` of the activations it puts in the middle tier (L2 of
L1/L2/DDR; the tier before the last), ``Tensor.device`` of scratch buffers (they
follow their operator). It places nothing: ``pack`` gives every buffer its offset,
and puts the tensors left without a tier in the last tier (DDR).

The problem, per device: each alias group of activations (it must share one tier)
lives over some steps, takes its aligned bytes and is worth the bytes its operators
move from or to it. Choose the groups to put in L2 so that the total worth is
maximal and ``pack`` can place them within L2. The choice is made on the peak (a
knapsack per step: at no step may the chosen groups alive exceed the tier), by a
greedy (best worth per byte-step first, each kept if no step it lives through
overflows) and, unless option ``solver`` is ``greedy`` or there are more than
``max_items`` groups, by OR-Tools CP-SAT (a presence literal per group, one linear
capacity constraint per step where a group starts, warm-started with the greedy;
deterministic limits: ``max_deterministic_time``, seed 0, one worker; wall-clock only
as a safety cap), the better of the two kept. Its bound (the solver's, or the total
worth) bounds every choice that fits, since a choice that fits has its peak within L2.

A peak within L2 does not always pack within L2 (items of different sizes can leave
gaps no placement avoids), so the choice is then checked with the placement ``pack``
starts from (:func:`tierplan.compiler.packing.place`, ``best``, on the same items):
the groups it puts above the tier are demoted to DDR and the rest placed again, until
the placement fits. ``pack``, starting from that same placement and never ending
above it, then fits the tier (with another ``strategy`` or a time limit, it falls
back to that placement when its own does not fit).
Each device's :class:`Assignment` is left in the :class:`TiersResult`
(``context.result(Tiers)``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
from ortools.sat.python import cp_model
from tierplan.compiler.cost import moved_bytes
from tierplan.compiler.ir import IRGraph, Tensor
from tierplan.compiler.packing import Item, place
from tierplan.compiler.pass_manager import (
    Bounds,
    PassContext,
    PassResult,
    ResultPass,
    register_pass,
)
from tierplan.compiler.target import Target
from tierplan.passes.pack import packing_items

log = logging.getLogger(__name__)

# Wall-clock cap, a safety net only: the deterministic limit ends the search (randwire's
# L2 choice took 33 s on a machine loaded six times over by others, 103 s beside two
# more CPU burners: a 120 s cap nearly decided the plan). Logged if it fires.
SAFETY_SECONDS = 900.0


@dataclass(frozen=True, slots=True)
class Candidate(Item):
    """An alias group that may go to L2: an :class:`~tierplan.compiler.packing.Item` (live
    ``[start, end]``, ``size`` aligned bytes) worth ``benefit`` bytes of traffic."""

    benefit: int


@dataclass(frozen=True, slots=True)
class Assignment:
    """Groups chosen for L2 (their keys), their total benefit, the best upper bound, how
    they were chosen and how many groups the placement check demoted."""

    chosen: frozenset[str]
    benefit: int
    bound: int
    method: str
    demoted: int = 0


def greedy_assignment(candidates: list[Candidate], capacity: int) -> Assignment:
    """Best benefit per byte-step first, each kept if no step of its life overflows."""
    order = sorted(
        candidates,
        key=lambda c: (-c.benefit / (c.size * (c.end - c.start + 1)), c.start, c.key),
    )
    horizon = max((c.end for c in candidates), default=0) + 1
    used = np.zeros(horizon, dtype=np.int64)  # bytes chosen at each step
    chosen = []
    for candidate in order:
        span = slice(candidate.start, candidate.end + 1)
        if used[span].max() + candidate.size <= capacity:
            used[span] += candidate.size
            chosen.append(candidate)
    return Assignment(
        frozenset(c.key for c in chosen),
        sum(c.benefit for c in chosen),
        sum(c.benefit for c in candidates),
        "greedy",
    )


def exact_assignment(
    candidates: list[Candidate],
    capacity: int,
    unit: int,
    hint: Assignment,
    max_deterministic_time: float,
) -> Assignment | None:
    """CP-SAT over presence literals; ``unit`` (the alignment) divides sizes and capacity."""
    fitting = [c for c in candidates if c.size <= capacity]
    if not fitting:
        return None
    model = cp_model.CpModel()
    present = {c.key: model.new_bool_var(f"in_{c.key}") for c in fitting}
    for c in fitting:
        model.add_hint(present[c.key], c.key in hint.chosen)
    # The bytes alive peak where some group starts: one constraint per such step.
    for step in sorted({c.start for c in fitting}):
        alive = [c for c in fitting if c.start <= step <= c.end]
        model.add(sum(c.size // unit * present[c.key] for c in alive) <= capacity // unit)
    model.maximize(sum(c.benefit * present[c.key] for c in fitting))
    solver = cp_model.CpSolver()
    solver.parameters.max_deterministic_time = max_deterministic_time
    solver.parameters.max_time_in_seconds = SAFETY_SECONDS
    solver.parameters.random_seed = 0
    solver.parameters.num_workers = 1
    status = solver.solve(model)
    if solver.wall_time >= SAFETY_SECONDS:
        log.warning(
            "CP-SAT hit its wall-clock safety cap (%.0f s): the result depends on the machine",
            SAFETY_SECONDS,
        )
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    chosen = [c for c in fitting if solver.value(present[c.key])]
    method = "cp-sat optimal" if status == cp_model.OPTIMAL else "cp-sat feasible"
    bound = min(int(solver.best_objective_bound), hint.bound)
    return Assignment(
        frozenset(c.key for c in chosen), sum(c.benefit for c in chosen), bound, method
    )


def assign(
    candidates: list[Candidate],
    capacity: int,
    unit: int,
    solver: str = "cp-sat",
    max_deterministic_time: float = 1.0,
    max_items: int = 1000,
) -> Assignment:
    """The best choice within the peak the chosen solver finds (never worse than the greedy)."""
    greedy = greedy_assignment(candidates, capacity)
    if solver == "greedy" or len(candidates) > max_items:
        return greedy
    exact = exact_assignment(candidates, capacity, unit, greedy, max_deterministic_time)
    if exact is None or exact.benefit < greedy.benefit:
        bound = exact.bound if exact else greedy.bound
        return Assignment(greedy.chosen, greedy.benefit, bound, "greedy")
    return exact


def demote_until_placed(items: list[Item], capacity: int) -> tuple[list[Item], frozenset[str]]:
    """``items`` less those :func:`~tierplan.compiler.packing.place` cannot fit under
    ``capacity``: those it puts above are dropped and the rest placed again, until the
    placement fits. Returns the items kept and the keys dropped."""
    dropped: set[str] = set()
    while True:
        placement = place(items)
        if placement.peak <= capacity:
            return items, frozenset(dropped)
        above = {i.key for i in items if placement.offsets[i.key] + i.size > capacity}
        dropped |= above
        items = [i for i in items if i.key not in above]


def traffic_by_tensor(ir: IRGraph) -> dict[str, int]:
    """Bytes all operators move from or to each tensor."""
    traffic: dict[str, int] = defaultdict(int)
    for op in ir.operators():
        for name, count in moved_bytes(ir, op).items():
            traffic[name] += count
    return traffic


def _candidates(
    ir: IRGraph, tensors: list[Tensor], traffic: dict[str, int], target: Target
) -> list[Candidate]:
    candidates = []
    for root, members in ir.alias_groups(tensors).items():
        if any(m.kind != "activation" for m in members) or ir.tensor(root).kind != "activation":
            continue  # graph inputs and outputs stay where the host sees them
        size = target.align_up(max(m.nbytes for m in members))
        benefit = sum(traffic[m.name] for m in members)
        start = min(m.start or 0 for m in members)
        end = max(m.end or 0 for m in members)
        if size and benefit:
            candidates.append(Candidate(root, start, end, size, benefit))
    return sorted(candidates, key=lambda c: c.key)


@dataclass(frozen=True, slots=True)
class TiersResult:
    """What ``tiers`` chose on each device: its :class:`Assignment`."""

    devices: dict[int, Assignment] = field(default_factory=dict)


@register_pass
@dataclass(frozen=True)
class Tiers(ResultPass[TiersResult]):
    """Put the activations worth the most L2 traffic into L2, a choice ``pack`` can place."""

    name = "tiers"
    requires = frozenset({"liveness"})
    provides = frozenset({"tiers"})
    invalidates = frozenset({"placement", "evaluation"})

    solver: Literal["cp-sat", "greedy"] = "cp-sat"
    max_deterministic_time: Annotated[float, Bounds(0)] = 1.0
    max_items: Annotated[int, Bounds(0)] = 1000

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        """Set ``tier`` of the activations chosen for the middle tier."""
        target = context.target
        for tensor in ir.tensors():
            if tensor.scratch_of is not None:
                tensor.device = ir.operator(tensor.scratch_of).device
        if len(target.tiers) < 3:
            return PassResult(changed=False, notes=["no tier between L1 and device memory"])
        middle = target.tiers[-2]
        by_device: dict[int, list[Tensor]] = defaultdict(list)
        for tensor in ir.tensors():
            if tensor.needs_buffer and tensor.kind != "scratch":
                if tensor.tier == middle.name:
                    tensor.tier, tensor.offset = None, None  # an earlier run's choice
                by_device[tensor.device].append(tensor)
        reports, notes = TiersResult(), []
        traffic = traffic_by_tensor(ir)
        for device, tensors in sorted(by_device.items()):
            candidates = _candidates(ir, tensors, traffic, target)
            result = assign(
                candidates,
                middle.usable,
                target.alignment,
                self.solver,
                self.max_deterministic_time,
                self.max_items,
            )
            roots = ir.alias_roots(tensors)
            chosen = [t for t in tensors if roots[t.name] in result.chosen]
            _, demoted = demote_until_placed(packing_items(ir, chosen, target), middle.usable)
            if demoted:
                kept = result.chosen - demoted
                benefit = sum(c.benefit for c in candidates if c.key in kept)
                result = Assignment(kept, benefit, result.bound, result.method, len(demoted))
            for tensor in chosen:
                if roots[tensor.name] in result.chosen:
                    tensor.tier = middle.name
            reports.devices[device] = result
            total = sum(c.benefit for c in candidates)
            notes.append(
                f"device {device}: {len(result.chosen)}/{len(candidates)} activation groups in "
                f"{middle.name}, {result.benefit}/{total} traffic bytes ({result.method}, "
                f"bound {result.bound}; {result.demoted} demoted by the placement check)"
            )
        context.set_result(self, reports)
        return PassResult(changed=True, notes=notes)


__all__ = [
    "Assignment",
    "Candidate",
    "Tiers",
    "TiersResult",
    "assign",
    "demote_until_placed",
    "exact_assignment",
    "greedy_assignment",
]
