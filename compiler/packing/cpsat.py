"""Offsets by OR-Tools CP-SAT: minimize the peak of a set of items, provably.

Each item is a rectangle: a fixed interval on the time axis and a fixed-size interval
at a variable offset on the address axis (both axes in units: steps, and the gcd of
the sizes, so offsets stay aligned), all pairwise apart by ``AddNoOverlap2D``. The
objective is the peak, bounded below by max-live (so the solver proves optimality as
soon as it meets it) and above by the known placement, which is also the hint: the
result is never worse than what came in. Identical items (same steps and size) are
ordered by key to break their symmetry.

The solve is deterministic: it is bounded by deterministic time, with a fixed seed
and worker count (several workers interleave their search deterministically). A
wall-clock limit only guards against a runaway machine; when it fires, the known
placement is kept and a warning is logged, so the output never depends on speed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from math import gcd

from ortools.sat.python import cp_model
from tierplan.compiler.packing.problem import Item, max_live

log = logging.getLogger(__name__)

# Deterministic limits per budget unit: CP-SAT's deterministic time undercounts the
# propagation of AddNoOverlap2D (0.4 units in 15 s on interlocking towers), so the
# search is also bounded by its number of conflicts.
CONFLICTS_PER_UNIT = 1_000
# Wall-clock safety net: this many seconds per budget unit, plus a margin.
SECONDS_PER_UNIT = 10.0
SECONDS_MARGIN = 10.0


@dataclass(frozen=True, slots=True)
class Solution:
    """CP-SAT's answer: offsets, their peak, the proven bound and the solver status."""

    offsets: dict[str, int]
    peak: int
    bound: int
    status: str


def minimize(
    items: list[Item], known: dict[str, int], floor: int, budget: float, workers: int
) -> Solution:
    """Lowest peak within ``budget`` deterministic seconds, starting from ``known``.

    ``floor`` is a peak the caller accepts as good enough (another section's bound):
    the solver stops when it reaches it.
    """
    unit = 0
    for item in items:
        unit = gcd(unit, item.size)
    unit = unit or 1
    known_peak = max((known[item.key] + item.size for item in items), default=0)
    bound = max_live(items)
    if known_peak <= max(bound, floor):
        status = "OPTIMAL" if known_peak <= bound else "FEASIBLE"
        return Solution(dict(known), known_peak, bound, status)
    model = cp_model.CpModel()
    height = known_peak // unit
    peak = model.new_int_var(max(bound, floor) // unit, height, "peak")
    hint = _symmetric_hint(items, known)
    offsets = {}
    rows, columns = [], []
    previous: dict[tuple[int, int, int], cp_model.IntVar] = {}
    for item in items:
        size = item.size // unit
        offset = model.new_int_var(0, height - size, item.key)
        offsets[item.key] = offset
        rows.append(model.new_fixed_size_interval_var(item.start, item.end - item.start + 1, ""))
        columns.append(model.new_fixed_size_interval_var(offset, size, ""))
        model.add(peak >= offset + size)
        model.add_hint(offset, hint[item.key] // unit)
        twin = previous.get((item.start, item.end, item.size))
        if twin is not None:
            model.add(twin + size <= offset)
        previous[(item.start, item.end, item.size)] = offset
    model.add_no_overlap_2d(rows, columns)
    model.minimize(peak)

    solver = cp_model.CpSolver()
    solver.parameters.max_deterministic_time = budget
    solver.parameters.max_number_of_conflicts = max(round(budget * CONFLICTS_PER_UNIT), 1)
    solver.parameters.max_time_in_seconds = budget * SECONDS_PER_UNIT + SECONDS_MARGIN
    solver.parameters.random_seed = 0
    solver.parameters.num_workers = workers
    solver.parameters.interleave_search = workers > 1
    result = solver.solve(model)
    name = solver.status_name(result)
    if solver.wall_time >= solver.parameters.max_time_in_seconds:
        log.warning(
            "CP-SAT hit its wall-clock safety limit (%.0f s) on %d items; keeping the known placement",
            solver.parameters.max_time_in_seconds,
            len(items),
        )
        return Solution(dict(known), known_peak, bound, "FEASIBLE")
    # A bound at or below ``floor`` may come from the floor constraint itself, not a proof.
    proven = round(solver.best_objective_bound) * unit if name != "UNKNOWN" else 0
    solved_bound = max(bound, proven) if proven > floor else bound
    if name not in ("OPTIMAL", "FEASIBLE"):
        return Solution(dict(known), known_peak, solved_bound, "FEASIBLE")
    placed = {key: solver.value(var) * unit for key, var in offsets.items()}
    placed_peak = int(solver.objective_value) * unit
    status = "OPTIMAL" if placed_peak <= solved_bound else "FEASIBLE"
    return Solution(placed, placed_peak, solved_bound, status)


def _symmetric_hint(items: list[Item], known: dict[str, int]) -> dict[str, int]:
    """``known`` with identical items' offsets sorted in item order (the model's order)."""
    groups: dict[tuple[int, int, int], list[str]] = {}
    for item in items:
        groups.setdefault((item.start, item.end, item.size), []).append(item.key)
    hint = {}
    for keys in groups.values():
        for key, offset in zip(keys, sorted(known[key] for key in keys), strict=True):
            hint[key] = offset
    return hint
