"""Offsets by OR-Tools CP-SAT: minimize the peak of a set of items, provably.

Each item is a rectangle: a fixed interval on the time axis and a fixed-size interval
at a variable offset on the address axis (both axes in units: steps, and the gcd of
the sizes and fixed offsets, so offsets stay aligned), all pairwise apart by
``AddNoOverlap2D``. The objective is the highest top of the free items, bounded below
by max-live (so the solver proves optimality as soon as it meets it) and above by the
known placement, which is also the hint: the result is never worse than what came in.
Identical items (same steps and size) are ordered by key to break their symmetry.

:func:`minimize` frees every item. :func:`minimize_windows` is a large-neighbourhood
search for problems too large (or too stalled) for one model: it fixes every item at
its known offset except a *window* of items nearest in time to an item at the peak,
lets CP-SAT re-place the window under the peak (the fixed items it overlaps in time
are constant boxes in the model), and repeats on the next item at the peak; a window
that cannot go lower is retried twice as large, up to :data:`WINDOW_LIMIT` items.

Every solve is deterministic: bounded by deterministic time and a conflict count,
with a fixed seed and worker count (several workers interleave their search
deterministically). A wall-clock limit (:data:`SECONDS_PER_UNIT` per unit) only
guards against a runaway machine;
when it fires, the known placement is kept, a warning is logged and the solution says
it was timed out, so a result that did depend on speed says so. Given a
:class:`~tierplan.compiler.packing.clock.Deadline` instead (a time-limited solve), a
solve is bounded by the wall clock alone, runs at least :data:`DEADLINE_WORKERS`
workers (CP-SAT's free-running portfolio) and keeps the best placement found by then;
its decision at the bound is then a series of solves with new seeds
(:func:`_decide_with_restarts`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from math import gcd

import numpy as np
from ortools.sat.python import cp_model
from tierplan.compiler.packing.clock import Deadline
from tierplan.compiler.packing.problem import Item, max_live

log = logging.getLogger(__name__)

# Deterministic limits per budget unit: CP-SAT's deterministic time undercounts the
# propagation of AddNoOverlap2D (0.4 units in 15 s on interlocking towers), so the
# search is also bounded by its number of conflicts. A conflict costs time in
# proportion to the boxes in the model: models larger than CONFLICT_COST_BOXES get
# proportionally fewer per unit, so that a unit stays a second or two (a 2,400-box
# window spent 8 s on 1,000 conflicts).
CONFLICTS_PER_UNIT = 1_000
CONFLICT_COST_BOXES = 200
# Units :func:`minimize` keeps for lowering the peak before it splits the rest with
# a decision at the bound.
MINIMIZE_UNITS = 1.0
# Wall-clock safety net: this many seconds per budget unit, plus a margin. A unit is
# meant to take a second or two on a quiet core, but interlocking towers took half of
# a 30 s per unit + 30 s net on a machine loaded six times over by others, and all of
# it beside two more CPU burners (benchmarks/determinism.py), so the net is far above:
# the deterministic limits end a single-worker solve first even then. With several
# workers CP-SAT's interleaved search ignores the conflict limit and its deterministic
# time undercounts AddNoOverlap2D, so there the net may fire (and the solve is then
# reported time-limited).
SECONDS_PER_UNIT = 120.0
SECONDS_MARGIN = 60.0

RESTART_SECONDS = 3.0
"""Length of the first of a time-limited decision's solves (see :func:`minimize`)."""
RESTART_GROWTH = 1.5

DEADLINE_WORKERS = 4
"""Fewest CP-SAT workers of a time-limited solve: on interlocking towers (25 s on two
busy cores) four find towers 8x12 #2 at max-live in 6 s where one ends 8.3% above it
in 25 s, and bring towers 10x16 #1 from 1.160 to 1.107 (eight: no better)."""

WINDOW_ITEMS = 60
"""Free items in a first window around an item at the peak."""
WINDOW_LIMIT = 480
"""Largest window: when one this large cannot lower the peak, the search stops."""
WINDOW_SPAN = 8
"""A window's model (free items and the fixed items they overlap in time) holds at
most this many times the window's free items: long-lived items stay fixed."""
WINDOW_UNITS = 0.25
"""Budget units one window may spend (less when the budget left is smaller)."""
ROUND_UNITS = 0.01
"""Budget units a window is charged at least, for building its model."""


@dataclass(frozen=True, slots=True)
class Solution:
    """CP-SAT's answer: offsets, their peak, the proven bound and the solver status.

    ``windows`` counts the windows solved by :func:`minimize_windows` and
    ``window_items`` the free items they held (the problem size after reduction);
    ``timed_out`` says a wall clock (the deadline or the safety net) ended a solve.
    """

    offsets: dict[str, int]
    peak: int
    bound: int
    status: str
    windows: int = 0
    window_items: int = 0
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    """One model's answer: the free items' offsets and top, the proven bound on it,
    the solver status, the budget units (or, with a deadline, seconds) it spent and
    whether a wall clock stopped it. Without a solution (status UNKNOWN, or INFEASIBLE
    for a decision) the offsets are the known ones."""

    offsets: dict[str, int]
    top: int
    bound: int
    status: str
    spent: float
    timed_out: bool = False

    @property
    def solved(self) -> bool:
        """Whether the solver found a placement (the offsets are its own)."""
        return self.status in ("OPTIMAL", "FEASIBLE")


def minimize(
    items: list[Item],
    known: dict[str, int],
    floor: int,
    budget: float,
    workers: int,
    deadline: Deadline | None = None,
) -> Solution:
    """Lowest peak within ``budget`` deterministic seconds (with a ``deadline``: until
    it), starting from ``known``.

    ``floor`` is a peak the caller accepts as good enough (another section's bound):
    the solver stops when it reaches it.
    """
    known_peak = _peak(items, known)
    bound = max_live(items)
    if known_peak <= max(bound, floor):
        status = "OPTIMAL" if known_peak <= bound else "FEASIBLE"
        return Solution(dict(known), known_peak, bound, status)
    if deadline is not None and deadline.passed():
        return Solution(dict(known), known_peak, bound, "FEASIBLE", timed_out=True)
    # First the decision: do the items fit under the floor? Without an objective CP-SAT
    # settles that far faster (interlocking towers: found at max-live in 12k conflicts,
    # where minimizing from the hint had not reached it after 30k). It gets half of the
    # budget beyond the first MINIMIZE_UNITS: a small budget is better spent lowering
    # the hint's peak (towers at 2 units: 1.078 with a decision, 1.063 without).
    target = max(bound, floor)
    if deadline is not None:
        budget = deadline.left()
    deciding = max(budget - MINIMIZE_UNITS, 0.0) / 2
    decided = None
    if deciding > 0:
        decided = (
            solve_window(items, [], known, target, deciding, workers, target, deadline)
            if deadline is None
            else _decide_with_restarts(items, known, target, workers, deadline.within(deciding))
        )
        if decided.solved:
            status = "OPTIMAL" if decided.top <= bound else "FEASIBLE"
            return Solution(decided.offsets, decided.top, bound, status, timed_out=False)
        if decided.timed_out and deadline is None:  # the safety net: keep what is known
            return Solution(dict(known), known_peak, bound, "FEASIBLE", timed_out=True)
        if decided.status == "INFEASIBLE":  # proven: nothing fits under the target
            bound = max(bound, decided.bound)
    spent = decided.spent if decided is not None and decided.status == "INFEASIBLE" else deciding
    left = deadline.left() if deadline else budget - spent
    answer = solve_window(items, [], known, max(bound, floor), left, workers, None, deadline)
    timed_out = answer.timed_out or (decided is not None and decided.timed_out)
    if not answer.solved:
        return Solution(dict(known), known_peak, bound, "FEASIBLE", timed_out=timed_out)
    # A bound at or below ``floor`` may come from the floor constraint itself, not a proof.
    solved_bound = max(bound, answer.bound) if answer.bound > floor else bound
    status = "OPTIMAL" if answer.top <= solved_bound else "FEASIBLE"
    return Solution(answer.offsets, answer.top, solved_bound, status, timed_out=timed_out)


def _decide_with_restarts(
    items: list[Item], known: dict[str, int], capacity: int, workers: int, deadline: Deadline
) -> Answer:
    """Whether ``items`` fit under ``capacity``, by time-limited solves of growing length
    (:data:`RESTART_SECONDS`, then :data:`RESTART_GROWTH` times longer each), each with
    another seed, until one settles it or ``deadline`` passes. The model takes the items
    bottom first in ``known`` (its variable order steers CP-SAT's search).

    The time a decision takes on interlocking towers is heavy-tailed in the seed and in
    the items' order: towers 8x12 #2 fits at max-live in 3 s with three seeds of four
    and not in 10 s with the fourth, nor in 10 s in (start, end) order, where it fits
    in 7 s bottom first; so several short tries beat one long one."""
    seconds, seed = RESTART_SECONDS, 0
    items = sorted(items, key=lambda item: (known[item.key], item.start, item.key))
    while True:
        answer = solve_window(
            items, [], known, capacity, seconds, workers, capacity, deadline, seed
        )
        if answer.status in ("OPTIMAL", "FEASIBLE", "INFEASIBLE") or deadline.passed():
            return answer
        seconds, seed = seconds * RESTART_GROWTH, seed + 1


def minimize_windows(
    items: list[Item],
    known: dict[str, int],
    floor: int,
    budget: float,
    workers: int,
    on_window: Callable[[int], None] | None = None,
    deadline: Deadline | None = None,
) -> Solution:
    """Lower the peak of ``known`` window by window within ``budget`` units (with a
    ``deadline``: until it; see the module docstring); never above ``known``'s peak.
    The bound is max-live: a window's bound proves nothing about the whole problem.
    ``on_window`` gets the peak after each window."""
    bound = max_live(items)
    target = max(bound, floor)
    starts = np.array([item.start for item in items], dtype=np.int64)
    ends = np.array([item.end for item in items], dtype=np.int64)
    sizes = np.array([item.size for item in items], dtype=np.int64)
    lows = np.array([known[item.key] for item in items], dtype=np.int64)
    index = {item.key: position for position, item in enumerate(items)}
    sorted_starts, sorted_ends = np.sort(starts), np.sort(ends)
    left, free_count, windows, window_items = budget, WINDOW_ITEMS, 0, 0
    timed_out = False
    while (deadline.left() if deadline else left) > 0:
        if deadline is not None:
            left = deadline.left()
        tops = lows + sizes
        peak = int(tops.max(initial=0))
        if peak <= target:
            break
        hot = int(np.flatnonzero(tops == peak)[0])  # the earliest item at the peak
        if _alive(int(starts[hot]), int(ends[hot]), sorted_starts, sorted_ends) > (
            WINDOW_LIMIT * WINDOW_SPAN
        ):
            break  # a long-lived item at the peak: no window around it is small enough
        largest = free_count >= min(WINDOW_LIMIT, len(items))
        free = _window(hot, starts, ends, tops, free_count, (sorted_starts, sorted_ends))
        span = (int(starts[free].min()), int(ends[free].max()))
        chosen = np.zeros(len(items), dtype=bool)
        chosen[free] = True
        fixed = np.flatnonzero(~chosen & (starts <= span[1]) & (ends >= span[0]))
        answer = solve_window(
            [items[i] for i in free.tolist()],
            [(items[i], int(lows[i])) for i in fixed.tolist()],
            {items[i].key: int(lows[i]) for i in free.tolist()},
            target,
            left if largest else min(left, WINDOW_UNITS * free_count / WINDOW_ITEMS),
            workers,
            deadline=deadline,
        )
        windows += 1
        window_items += len(free)
        timed_out = timed_out or answer.timed_out
        if not answer.solved and deadline is None:
            break  # the safety net fired, or the units ran out before any placement
        left -= max(answer.spent, ROUND_UNITS)
        if answer.solved and answer.top < peak:
            for key, offset in answer.offsets.items():
                lows[index[key]] = offset
            free_count = WINDOW_ITEMS
            if on_window is not None:
                on_window(int((lows + sizes).max()))
        elif largest:
            break  # the largest window cannot lower this item: the peak stays
        else:
            free_count *= 2
    offsets = {item.key: int(low) for item, low in zip(items, lows.tolist(), strict=True)}
    peak = _peak(items, offsets)
    status = "OPTIMAL" if peak <= bound else "FEASIBLE"
    return Solution(offsets, peak, bound, status, windows, window_items, timed_out)


def _window(
    hot: int,
    starts: np.ndarray,
    ends: np.ndarray,
    tops: np.ndarray,
    count: int,
    sorted_steps: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Up to ``count`` items nearest in time to item ``hot`` (highest tops first among
    equals), skipping any that would stretch the window's span over more than
    :data:`WINDOW_SPAN` times ``count`` items."""
    distance = np.maximum(np.maximum(starts - ends[hot], starts[hot] - ends), 0)
    distance[hot] = -1  # the item at the peak is always free
    order = np.lexsort((np.arange(len(starts)), -tops, distance))
    sorted_starts, sorted_ends = sorted_steps
    first, last = int(starts[hot]), int(ends[hot])
    free: list[int] = []
    for candidate in order[: count * WINDOW_SPAN].tolist():
        low, high = min(first, int(starts[candidate])), max(last, int(ends[candidate]))
        if free and _alive(low, high, sorted_starts, sorted_ends) > count * WINDOW_SPAN:
            continue
        free.append(candidate)
        first, last = low, high
        if len(free) == count:
            break
    return np.array(free, dtype=np.int64)


def _alive(first: int, last: int, sorted_starts: np.ndarray, sorted_ends: np.ndarray) -> int:
    """How many items are alive at some step of ``[first, last]``."""
    started = int(np.searchsorted(sorted_starts, last, side="right"))
    return started - int(np.searchsorted(sorted_ends, first, side="left"))


def solve_window(
    free: list[Item],
    fixed: list[tuple[Item, int]],
    known: dict[str, int],
    low: int,
    budget: float,
    workers: int,
    capacity: int | None = None,
    deadline: Deadline | None = None,
    seed: int = 0,
) -> Answer:
    """Re-place ``free`` (from ``known``) around the ``fixed`` (item, offset) boxes,
    minimizing the free items' highest top down to ``low``, within ``budget``
    deterministic units, or, with a ``deadline``, ``budget`` seconds and not past it.
    The known offsets stand when the wall-clock safety net fired (``timed_out``) or the
    solver found nothing. With ``capacity``, only decide whether they fit under it
    (status INFEASIBLE, with the next capacity as the bound, when proven not to).
    ``seed`` is CP-SAT's random seed."""
    unit = 0
    for item in free:
        unit = gcd(gcd(unit, item.size), known[item.key])
    for item, at in fixed:
        unit = gcd(gcd(unit, item.size), at)
    unit = unit or 1
    height = _peak(free, known) // unit if capacity is None else capacity // unit
    model = cp_model.CpModel()
    top = model.new_int_var(min(-(-low // unit), height), height, "top")
    hint = _symmetric_hint(free, known) if capacity is None else {}
    offsets = {}
    rows, columns = [], []
    previous: dict[tuple[int, int, int], cp_model.IntVar] = {}
    for item in free:
        size = item.size // unit
        offset = model.new_int_var(0, height - size, item.key)
        offsets[item.key] = offset
        rows.append(model.new_fixed_size_interval_var(item.start, item.end - item.start + 1, ""))
        columns.append(model.new_fixed_size_interval_var(offset, size, ""))
        model.add(top >= offset + size)
        if hint:
            model.add_hint(offset, hint[item.key] // unit)
        twin = previous.get((item.start, item.end, item.size))
        if twin is not None:
            model.add(twin + size <= offset)
        previous[(item.start, item.end, item.size)] = offset
    for item, at in fixed:
        rows.append(model.new_fixed_size_interval_var(item.start, item.end - item.start + 1, ""))
        columns.append(model.new_fixed_size_interval_var(at // unit, item.size // unit, ""))
    model.add_no_overlap_2d(rows, columns)
    if capacity is None:
        model.minimize(top)

    solver = cp_model.CpSolver()
    per_unit = CONFLICTS_PER_UNIT * CONFLICT_COST_BOXES / max(len(rows), CONFLICT_COST_BOXES)
    if deadline is None:
        solver.parameters.max_deterministic_time = budget
        solver.parameters.max_number_of_conflicts = max(round(budget * per_unit), 1)
        solver.parameters.max_time_in_seconds = budget * SECONDS_PER_UNIT + SECONDS_MARGIN
    else:
        solver.parameters.max_time_in_seconds = max(min(budget, deadline.left()), 0.01)
    solver.parameters.random_seed = seed
    # A time-limited solve depends on the machine anyway: it gets CP-SAT's portfolio of
    # several search strategies at once, even on few cores.
    solver.parameters.num_workers = max(workers, DEADLINE_WORKERS) if deadline else workers
    # Interleaving makes several workers deterministic; a time-limited solve is not,
    # and gets CP-SAT's stronger free-running portfolio instead.
    solver.parameters.interleave_search = workers > 1 and deadline is None
    result = solver.solve(model)
    name = solver.status_name(result)
    known_top = _peak(free, known)
    if deadline is None and solver.wall_time >= solver.parameters.max_time_in_seconds:
        log.warning(
            "CP-SAT hit its wall-clock safety limit (%.0f s) on %d items; keeping the known "
            "placement (the result is time-limited: it depends on the machine's speed)",
            solver.parameters.max_time_in_seconds,
            len(free),
        )
        return Answer(dict(known), known_top, 0, "UNKNOWN", budget, timed_out=True)
    # With a deadline, a solve that ends without proving its answer was stopped by it.
    timed_out = deadline is not None and name not in ("OPTIMAL", "INFEASIBLE")
    spent = (
        solver.wall_time
        if deadline is not None
        else min(max(solver.deterministic_time, solver.num_conflicts / per_unit), budget)
    )
    if name == "INFEASIBLE" and capacity is not None:
        return Answer(dict(known), known_top, (height + 1) * unit, name, spent)
    if name not in ("OPTIMAL", "FEASIBLE"):
        return Answer(dict(known), known_top, 0, "UNKNOWN", spent, timed_out)
    return Answer(
        offsets={key: solver.value(var) * unit for key, var in offsets.items()},
        top=max(
            (
                solver.value(var) * unit + item.size
                for item, var in zip(free, offsets.values(), strict=True)
            ),
            default=0,
        ),
        bound=round(solver.best_objective_bound) * unit if capacity is None else 0,
        status=name,
        spent=spent,
        timed_out=timed_out,
    )


def _peak(items: list[Item], offsets: dict[str, int]) -> int:
    return max((offsets[item.key] + item.size for item in items), default=0)


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
