"""``tiers``: choose L2 or DDR for every activation, maximizing the traffic served from L2.

Reads: ``Tensor.start``/``end`` (liveness), ``alias_of``, ``device``, each
operator's traffic per tensor (``Operator.tiles`` where tiled, else each tensor's
bytes once: :func:`tierplan.compiler.cost.moved_bytes`), the target's tiers.
Writes: ``Tensor.tier`` and ``Tensor.offset`` of the activations it puts in the
middle tier (L2 of L1/L2/DDR; the tier before the last), ``Tensor.device`` of
scratch buffers (they follow their operator). Other tensors stay unplaced, so
``pack`` puts them in the last tier (DDR).

The problem, per device: each alias group of activations (it must share one
tier) is a rectangle, its live steps by its aligned bytes, worth the bytes its
operators move from or to it. Choose the groups to place in L2, and their
offsets, so that no two placed groups alive at one step share a byte and the
total worth is maximal. Solved exactly with OR-Tools CP-SAT (an optional interval
per axis and a presence literal per group, ``NoOverlap2D`` over them, a redundant
cumulative on the steps), warm-started with a greedy (best worth per byte-step
first, each at its lowest free offset, kept if it fits). Limits are
deterministic (``max_deterministic_time``, seed 0, one worker; wall-clock only as
a safety cap). Above ``max_items`` groups, or if the solver finds nothing better,
the greedy answer stands. The offsets are proved feasible here; ``pack`` keeps
them when its own heuristic would exceed the tier. Each device's
:class:`Assignment` is left in the :class:`TiersResult` (``context.result(Tiers)``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
from ortools.sat.python import cp_model
from tierplan.compiler.alias_layout import alias_positions
from tierplan.compiler.cost import moved_bytes
from tierplan.compiler.intervals import IntervalIndex
from tierplan.compiler.ir import IRGraph, Tensor
from tierplan.compiler.pass_manager import (
    Bounds,
    PassContext,
    PassResult,
    ResultPass,
    register_pass,
)
from tierplan.compiler.target import Target

log = logging.getLogger(__name__)

# Wall-clock cap, a safety net only: the deterministic limit ends the search (randwire's
# L2 choice took 33 s on a machine loaded six times over by others, 103 s beside two
# more CPU burners: a 120 s cap nearly decided the plan). Logged if it fires.
SAFETY_SECONDS = 900.0


@dataclass(frozen=True, slots=True)
class Candidate:
    """An alias group that may go to L2: live ``[start, end]``, ``size`` aligned bytes."""

    key: str
    start: int
    end: int
    size: int
    benefit: int


@dataclass(frozen=True, slots=True)
class Assignment:
    """Groups placed in L2 (key -> offset), their total benefit, and the best upper bound."""

    offsets: dict[str, int]
    benefit: int
    bound: int
    method: str


def greedy_assignment(candidates: list[Candidate], capacity: int) -> Assignment:
    """Best benefit per byte-step first, each at its lowest free offset if it fits."""
    order = sorted(
        candidates,
        key=lambda c: (-c.benefit / (c.size * (c.end - c.start + 1)), c.start, c.key),
    )
    placed: list[tuple[Candidate, int]] = []
    horizon = max((c.end for c in candidates), default=0) + 1
    steps: IntervalIndex[int] = IntervalIndex(horizon)  # placed candidates by their steps
    used = np.zeros(horizon, dtype=np.int64)  # bytes placed at each step
    for candidate in order:
        span = slice(candidate.start, candidate.end + 1)
        if used[span].max() + candidate.size > capacity:
            continue  # a full step in its range: no offset fits (once L2 is full, O(1) numpy)
        busy = sorted(
            (placed[i][1], placed[i][1] + placed[i][0].size)
            for i in steps.overlapping(candidate.start, candidate.end)
        )
        offset = 0  # the lowest offset below which nothing in `busy` is in the way
        for low, high in busy:
            if low - offset >= candidate.size:
                break
            offset = max(offset, high)
        if offset + candidate.size <= capacity:
            steps.add(len(placed), candidate.start, candidate.end)
            used[span] += candidate.size
            placed.append((candidate, offset))
    offsets = {c.key: o for c, o in placed}
    benefit = sum(c.benefit for c, _ in placed)
    return Assignment(offsets, benefit, sum(c.benefit for c in candidates), "greedy")


def exact_assignment(
    candidates: list[Candidate],
    capacity: int,
    unit: int,
    hint: Assignment,
    max_deterministic_time: float,
) -> Assignment | None:
    """CP-SAT over optional intervals; ``unit`` (the alignment) divides sizes and offsets."""
    model = cp_model.CpModel()
    slots = capacity // unit
    present, offsets, steps, spaces = {}, {}, [], []
    for c in candidates:
        width = c.size // unit
        if width > slots:
            continue
        literal = model.new_bool_var(f"in_{c.key}")
        offset = model.new_int_var(0, slots - width, f"at_{c.key}")
        steps.append(
            model.new_optional_fixed_size_interval_var(
                c.start, c.end - c.start + 1, literal, f"t_{c.key}"
            )
        )
        spaces.append(model.new_optional_fixed_size_interval_var(offset, width, literal, ""))
        present[c.key], offsets[c.key] = literal, offset
        model.add_hint(literal, c.key in hint.offsets)
        model.add_hint(offset, hint.offsets.get(c.key, 0) // unit)
    if not present:
        return None
    model.add_no_overlap_2d(steps, spaces)
    model.add_cumulative(steps, [c.size // unit for c in candidates if c.key in present], slots)
    benefit = {c.key: c.benefit for c in candidates}
    model.maximize(sum(benefit[key] * literal for key, literal in present.items()))
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
    chosen = {
        key: solver.value(offsets[key]) * unit for key, lit in present.items() if solver.value(lit)
    }
    method = "cp-sat optimal" if status == cp_model.OPTIMAL else "cp-sat feasible"
    bound = min(int(solver.best_objective_bound), hint.bound)
    return Assignment(chosen, sum(benefit[k] for k in chosen), bound, method)


def assign(
    candidates: list[Candidate],
    capacity: int,
    unit: int,
    solver: str = "cp-sat",
    max_deterministic_time: float = 1.0,
    max_items: int = 1000,
) -> Assignment:
    """The best assignment the chosen solver finds (never worse than the greedy)."""
    greedy = greedy_assignment(candidates, capacity)
    if solver == "greedy" or len(candidates) > max_items:
        return greedy
    exact = exact_assignment(candidates, capacity, unit, greedy, max_deterministic_time)
    if exact is None or exact.benefit < greedy.benefit:
        return Assignment(
            greedy.offsets, greedy.benefit, exact.bound if exact else greedy.bound, "greedy"
        )
    return exact


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
    """Put the activations worth the most L2 traffic into L2, with proven offsets."""

    name = "tiers"
    requires = frozenset({"liveness"})
    provides = frozenset({"tiers"})
    invalidates = frozenset({"placement", "evaluation"})

    solver: Literal["cp-sat", "greedy"] = "cp-sat"
    max_deterministic_time: Annotated[float, Bounds(0)] = 1.0
    max_items: Annotated[int, Bounds(0)] = 1000

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        """Set ``tier``/``offset`` of the activations placed in the middle tier."""
        target = context.target
        step_device = {op.step: op.device for op in ir.operators()}
        for tensor in ir.tensors():
            if tensor.kind == "scratch" and tensor.start is not None:
                tensor.device = step_device.get(tensor.start, tensor.device)
        if len(target.tiers) < 3:
            return PassResult(changed=False, notes=["no tier between L1 and device memory"])
        middle = target.tiers[-2]
        by_device: dict[int, list[Tensor]] = defaultdict(list)
        for tensor in ir.tensors():
            if tensor.needs_buffer and tensor.kind != "scratch":
                if tensor.tier == middle.name:
                    tensor.tier, tensor.offset = None, None
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
            inside = alias_positions(ir, tensors)
            for tensor in tensors:
                offset = result.offsets.get(roots[tensor.name])
                if offset is not None:
                    tensor.tier, tensor.offset = middle.name, offset + inside[tensor.name]
            reports.devices[device] = result
            total = sum(c.benefit for c in candidates)
            notes.append(
                f"device {device}: {len(result.offsets)}/{len(candidates)} activation groups in "
                f"{middle.name}, {result.benefit}/{total} traffic bytes ({result.method}, "
                f"bound {result.bound})"
            )
        context.set_result(self, reports)
        return PassResult(changed=True, notes=notes)


__all__ = [
    "Assignment",
    "Candidate",
    "Tiers",
    "TiersResult",
    "assign",
    "exact_assignment",
    "greedy_assignment",
]
