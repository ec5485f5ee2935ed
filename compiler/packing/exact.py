"""Exact packing: heuristics first, then the exact engines where they leave a gap.

:func:`solve` starts from the heuristic placement (the warm start), reduces the
problem and hands what is left to the decision search (:mod:`.search`), CP-SAT
(:mod:`.cpsat`), or both (``auto``). Reductions (:func:`stacked_sections`):

- the timeline is cut into **sections** where no item crosses a step boundary; each
  is packed alone (an item that conflicts with nothing is a section);
- items alive through a whole section are **stacked** at its bottom (moving such an
  item down never raises the peak: what lay below it moves up by its size), and the
  rest is split into sections again, recursively: rectangle cuts lose 0-37 of 100
  items this way, cut blocks on a shared baseline fall apart into their blocks;
- a part whose peak is already within the global bound (max-live of all the items)
  is **kept as is**: no part needs to go lower than that;
- identical items (same steps, same size) are ordered, breaking their symmetry.

Engines, within the budget (deterministic units: CP-SAT's deterministic seconds and
conflicts; the search gets :data:`NODES_PER_UNIT` nodes per unit), shared by the
parts so the result never depends on the machine's speed; callers give a region
:func:`region_budget` units per 1,000 items:

1. with several parts above the bound, the search goes first **in rounds**: every
   part gets a short decision search at the bound, resumed with twice the nodes
   each round (:class:`.search.Decider`), for half the budget, so easy parts finish
   cheaply and one hard part cannot starve the rest (cut blocks, 10k buffers, 36
   parts above the bound: 0.00% gap, where one share per part left 28.85%);
2. each part still above the bound gets an even share of what is left. When items of
   equal lifetime group (:mod:`.grouping`), the engines below first solve the grouped
   problem with :data:`GROUPED_SHARE` of that share (its placement is the part's; its
   refutations prove nothing about the part), then the part with the rest: the search
   minimizes (decision at the bound, then bisection), and in ``auto`` CP-SAT takes
   over after at most :data:`AUTO_SEARCH_UNITS` (it minimizes from the best
   placement; given more than a unit, it first decides whether the part fits at the
   bound, which settles interlocking towers that minimizing from the hint does not);
3. a part with more items than :data:`CPSAT_LIMIT` (``cpsat``, ``auto``) is improved by
   CP-SAT **windows** (:func:`.cpsat.minimize_windows`) instead: at equal budget one
   model of a whole section beats windows on the sections it can hold (cuts-200
   mean peak/max-live 1.052 whole vs 1.057 windows, towers 8x12 1.096 vs 1.163: a
   window's fixed neighbours wall in the long-lived towers), after local moves at
   its peak (:mod:`.peaks`), which reach the long-lived items no window around them
   can hold (half of the part's units or time each; on the production-like 20k trace
   the moves end at max-live in seconds, where the windows stopped 0.67% above it);
   with ``search`` such a part stays with the heuristic.

An engine that fails or returns an invalid or worse placement is logged and ignored:
the heuristic placement is never lost.

Given a :class:`~.clock.Deadline` (``--time-limit``), the same steps share wall-clock
seconds instead of units: the rounds get half of the time left, each part still above
the bound an even share of what is then left (in ``auto``, the search gets
:data:`TIMED_SEARCH_SHARE` of it, CP-SAT the rest), and the engines stop at their share's
end, early enough to leave time for checking their result (:func:`_checking_seconds`);
none starts when the heuristics took all the time. The report is then marked
``time_limited`` when a clock stopped any engine: the result is the best found in time,
and depends on the machine.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np
from tierplan.compiler.packing import cpsat, peaks, search
from tierplan.compiler.packing.clock import Deadline
from tierplan.compiler.packing.grouping import group_equal_lifetimes
from tierplan.compiler.packing.placers import place
from tierplan.compiler.packing.problem import Item, Placement, check_placement, max_live

log = logging.getLogger(__name__)

SOLVERS = ("greedy", "search", "cpsat", "auto")
"""``greedy``: heuristics only; ``search``/``cpsat``: that engine; ``auto``: both."""

NODES_PER_UNIT = 10_000
"""Search nodes per budget unit on sections of up to :data:`NODE_COST_ITEMS` items
(about one second of search on a laptop core)."""

NODE_COST_ITEMS = 100
"""A search node costs time in proportion to the section's items: larger sections
get proportionally fewer nodes per unit, so a unit stays about one second."""

AUTO_SEARCH_UNITS = 2.0
"""Most units the search gets on one section in ``auto`` before CP-SAT takes over."""

TIMED_SEARCH_SHARE = 0.3
"""Share of a section's seconds the search gets in a time-limited ``auto`` solve, before
CP-SAT: on interlocking towers the decision search at the bound often ends in a few
seconds, or else stalls for long (its run times are heavy-tailed), so it gets a
sizeable slice, and CP-SAT, which settles other towers, the rest."""

GROUPED_SHARE = 0.6
"""Share of a section's units (or seconds) for its grouped problem (:mod:`.grouping`),
when equal lifetimes group: a hard section is settled there if anywhere (interlocking
towers fit at max-live as groups in a tenth of a second to 10 s, where the section
itself stays undecided for 30 s), and the gap it leaves the section's own engines
rarely close (with 40%, towers 10x16 #2 ended 0.54% above max-live in 30 s; cuts 200 at
the default budget: mean 1.0352 with 40%, 1.0328 with 60%)."""

ROUND_NODES = 128
"""Node limit of each part's first decision search; it doubles every round."""

SEARCH_LIMIT = 1_000
"""Largest section the search takes (its state is quadratic in the items)."""

CPSAT_LIMIT = 1_000
"""Largest section handed to CP-SAT."""

UNLIMITED_NODES = 1 << 62
"""The node budget of a search bounded by a deadline alone."""

CHECK_SAMPLE = 16
"""A time-limited solve times a check of one item in this many, to keep time for the
check of them all (below this many squared items it keeps none)."""

CHECK_MARGIN = 2.0
"""Time kept for the final check, as a multiple of its estimate (writing the result out
takes some too)."""


def region_budget(per_thousand: float, items: int) -> float:
    """Units for a region of ``items`` buffers: ``per_thousand`` per 1,000 of them, and
    never less than for 1,000."""
    return per_thousand * max(1.0, items / 1000)


@dataclass(slots=True)
class SolveReport:
    """What one solve did, for the pass results and the CLI.

    ``status`` is OPTIMAL when the peak equals the proven ``bound``, else FEASIBLE;
    ``exact_items``/``exact_sections`` is the problem size after reduction (sections
    solved whole); ``windows``/``window_items`` count the windows re-placed in
    sections too large for one model (in time, and bands in offset space), and the
    free items they held in total; ``peak_moves`` the local moves kept there.
    ``time_limited`` is True when a wall clock (the time limit, or CP-SAT's safety
    net) stopped an engine: the placement then depends on the machine's speed.
    """

    solver: str
    status: str
    peak: int
    bound: int
    heuristic_peak: int
    heuristic: str
    items: int
    sections: int
    exact_sections: int = 0
    exact_items: int = 0
    search_nodes: int = 0
    windows: int = 0
    window_items: int = 0
    peak_moves: int = 0
    time_limited: bool = False
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def gap(self) -> float:
        """Relative distance of the peak above the bound (0 when optimal)."""
        return (self.peak - self.bound) / self.bound if self.bound else 0.0

    def as_dict(self) -> dict[str, object]:
        """Plain data (for JSON), with the gap."""
        return {**asdict(self), "gap": self.gap}


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a solve stands, for a progress display: the section at hand (1-based, of
    the ``sections`` handed to the engines), its items, the engine working on it
    (``search``, ``cpsat``, ``peak moves`` or ``windows``), the section's current peak
    and the bound."""

    section: int
    sections: int
    items: int
    engine: str
    peak: int
    bound: int

    def describe(self) -> str:
        """One status line: section, engine, peak against bound."""
        gap = (self.peak - self.bound) / self.bound if self.bound else 0.0
        return (
            f"section {self.section}/{self.sections} ({self.items} items, {self.engine}): "
            f"peak {self.peak} bytes, bound {self.bound} (+{gap:.2%})"
        )


OnProgress = Callable[[Progress], None]
"""Called by :func:`solve` as it goes (several times per section)."""


def sections(items: list[Item]) -> list[list[Item]]:
    """Items grouped into maximal runs of steps that no item crosses, in step order."""
    return _runs(sorted(items, key=lambda item: (item.start, item.end, item.key)))


def section_count(items: list[Item]) -> int:
    """How many :func:`sections` ``items`` fall into (without building them)."""
    if not items:
        return 0
    starts = np.array([item.start for item in items], dtype=np.int64)
    ends = np.array([item.end for item in items], dtype=np.int64)
    order = np.argsort(starts, kind="stable")
    reach = np.maximum.accumulate(ends[order])
    return 1 + int((starts[order][1:] > reach[:-1]).sum())


def _runs(ordered: list[Item]) -> list[list[Item]]:
    """:func:`sections` of items already in (start, end, key) order, which it keeps."""
    groups: list[list[Item]] = []
    reach = -1
    for item in ordered:
        if item.start > reach:
            groups.append([])
            reach = item.end
        elif item.end > reach:
            reach = item.end
        groups[-1].append(item)
    return groups


@dataclass(frozen=True, slots=True)
class Part:
    """Items packed together above ``base`` (the bytes stacked below them)."""

    base: int
    items: list[Item]


class _Remaining:
    """Items in (start, end, key) order, some of them stacked away: what a part of
    :func:`stacked_sections` asks, each in about log n time rather than a pass over
    the part (a part is a range of this order without the stacked items)."""

    def __init__(self, ordered: list[Item]) -> None:
        self.ordered = ordered
        self.starts = [item.start for item in ordered]
        self.ends = [item.end for item in ordered]
        self.leaves = 1 << max(len(ordered) - 1, 0).bit_length()
        self.reach = [-1] * (2 * self.leaves)  # a tree of the largest end below each node
        self.reach[self.leaves : self.leaves + len(ordered)] = self.ends
        for node in range(self.leaves - 1, 0, -1):
            self.reach[node] = max(self.reach[2 * node], self.reach[2 * node + 1])
        self.after = list(range(len(ordered) + 1))  # the next index left, as union-find
        self.gone = [False] * len(ordered)

    def remove(self, index: int) -> None:
        self.gone[index] = True
        self.after[index] = index + 1
        node = index + self.leaves
        self.reach[node] = -1
        while node > 1:
            node >>= 1
            self.reach[node] = max(self.reach[2 * node], self.reach[2 * node + 1])

    def next(self, index: int) -> int:
        """The first index at or after ``index`` still left (the item count if none)."""
        root = index
        while self.after[root] != root:
            root = self.after[root]
        while self.after[index] != root:
            self.after[index], index = root, self.after[index]
        return root

    def last_end(self, low: int, high: int) -> int:
        """The largest end among the items left in ``[low, high)`` (-1 if none)."""
        found, low, high = -1, low + self.leaves, high + self.leaves
        while low < high:
            if low & 1:
                found, low = max(found, self.reach[low]), low + 1
            if high & 1:
                high -= 1
                found = max(found, self.reach[high])
            low, high = low >> 1, high >> 1
        return found

    def sections(self, low: int, high: int) -> list[tuple[int, int]]:
        """:func:`sections` of the items left in ``[low, high)``, as index ranges."""
        found = []
        first = self.next(low)
        while first < high:
            reach, stop = self.ends[first], first + 1
            while True:  # jump past every item starting before the section's reach
                stop = bisect.bisect_right(self.starts, reach, stop, high)
                further = self.last_end(first, stop)
                if further <= reach:
                    break
                reach = further
            found.append((first, stop))
            first = self.next(stop)
        return found

    def left(self, low: int, high: int) -> list[Item]:
        """The items left in ``[low, high)``, in order."""
        items, index = [], self.next(low)
        while index < high:
            items.append(self.ordered[index])
            index = self.next(index + 1)
        return items


def stacked_sections(items: list[Item]) -> tuple[dict[str, int], list[Part]]:
    """Sections, split further by stacking the items alive through a whole section.

    An item alive at every step of its section can move to the section's bottom
    without raising the peak (whatever lay below it moves up by its size), so
    stacking such items loses nothing; the items left above may then fall apart into
    smaller sections, which are split the same way. Returns the stacked items'
    offsets and the parts left to pack, each above its stack, in step order.

    A part is a range of the items in (start, end, key) order less those stacked: its
    spanning items close the block of its earliest start, and where it splits is
    found by jumping over starts (:class:`_Remaining`), so peeling one item at a time
    off a deep nest of n intervals costs n log n, not n².
    """
    ordered = sorted(items, key=lambda item: (item.start, item.end, item.key))
    remaining = _Remaining(ordered)
    starts, ends = remaining.starts, remaining.ends
    stacked: dict[str, int] = {}
    parts: list[Part] = []
    work = [(0, low, high) for low, high in reversed(remaining.sections(0, len(ordered)))]
    while work:
        base, low, high = work.pop()
        first, last = starts[low], remaining.last_end(low, high)
        block = bisect.bisect_right(starts, first, low, high)
        spanning = [
            index
            for index in range(bisect.bisect_left(ends, last, low, block), block)
            if not remaining.gone[index]
        ]
        if not spanning:
            parts.append(Part(base, remaining.left(low, high)))
            continue
        for index in sorted(spanning, key=lambda i: (-ordered[i].size, ordered[i].key)):
            stacked[ordered[index].key] = base
            base += ordered[index].size
            remaining.remove(index)
        work.extend((base, a, b) for a, b in reversed(remaining.sections(low, high)))
    return stacked, parts


def solve(
    items: list[Item],
    known: Placement,
    solver: str,
    budget: float,
    workers: int = 1,
    progress: OnProgress | None = None,
    deadline: Deadline | None = None,
) -> tuple[Placement, SolveReport]:
    """Improve the heuristic placement ``known`` of ``items`` with the named engine,
    within ``budget`` units or, given a ``deadline``, until it (``budget`` is then
    unused), telling ``progress`` (if given) what it works on."""
    began = time.perf_counter()
    bound = max_live(items)
    report = SolveReport(
        solver=solver,
        status="",
        peak=known.peak,
        bound=bound,
        heuristic_peak=known.peak,
        heuristic=known.placer,
        items=len(items),
        sections=section_count(items),
    )
    offsets = dict(known.offsets)
    if deadline is not None and not deadline.passed():
        # Checking what the engines return takes time too: they stop early enough for it.
        deadline = deadline.within(max(deadline.left() - _checking_seconds(items, offsets), 0))
    if deadline is not None and deadline.passed():
        report.time_limited = True  # the heuristics took all the time: nothing to split
    elif solver != "greedy":
        parts = _starting_point(items, offsets, deadline)
        limit = CPSAT_LIMIT if solver == "cpsat" else SEARCH_LIMIT
        todo = [part for part in parts if _peak(part.items, offsets) > bound]
        if solver == "search":
            oversized = [part for part in todo if len(part.items) > limit]
            if oversized:
                report.warnings.append(
                    f"{len(oversized)} sections above {limit} items kept the heuristic placement"
                )
            todo = [part for part in todo if len(part.items) <= limit]
        whole = [part for part in todo if len(part.items) <= limit]
        report.exact_sections = len(whole)
        report.exact_items = sum(len(part.items) for part in whole)
        tells = [
            _teller(progress, part, index, len(todo), offsets, bound)
            for index, part in enumerate(todo)
        ]
        left = budget
        if solver in ("search", "auto") and len(todo) > 1:
            # Easy parts first: every part gets a short decision search at the bound,
            # then twice as long, ... so one hard part cannot starve the others. Half
            # of the budget: the parts left need the rest to lower their peak.
            half = deadline.within(deadline.left() / 2) if deadline else None
            left -= _decide_in_rounds(todo, offsets, bound, budget / 2, report, tells, half)
        rest = [
            (part, tell)
            for part, tell in zip(todo, tells, strict=True)
            if _peak(part.items, offsets) > bound
        ]
        for index, (part, tell) in enumerate(rest):
            if deadline is not None and deadline.passed():
                break  # building a model would take longer than the time left
            units = (deadline.left() if deadline else left) / (len(rest) - index)
            share = _Share(units, deadline.within(units) if deadline else None)
            if len(part.items) > limit:
                label, engine = "CP-SAT windows", _window_engine(share, workers, report, tell)
            else:
                label, engine = solver, _exact_engines(solver, share, workers, report, tell)
            spent = _run_engine(part, offsets, bound, label, engine, report, tell)
            left -= min(spent, units)
        # The clock ran out (engines or heuristics cut short): the placement is time's.
        report.time_limited |= deadline is not None and deadline.passed()
        if _peak(items, offsets) > known.peak:
            report.warnings.append("the exact engines ended above the heuristic; kept it")
            offsets = dict(known.offsets)
    report.peak = _peak(items, offsets)
    report.bound = max(report.bound, bound)
    report.status = "OPTIMAL" if report.peak <= report.bound else "FEASIBLE"
    report.seconds = time.perf_counter() - began
    for warning in report.warnings:
        log.warning("pack: %s", warning)
    return Placement.of(items, offsets, f"{known.placer}+{solver}"), report


def _checking_seconds(items: list[Item], offsets: dict[str, int]) -> float:
    """Seconds to set aside for checking the final placement and handing it on:
    :data:`CHECK_MARGIN` times a check of a slice of the items, one in
    :data:`CHECK_SAMPLE` consecutive in start order (as dense as the whole), scaled."""
    if len(items) < CHECK_SAMPLE * CHECK_SAMPLE:
        return 0.0
    ordered = sorted(items, key=lambda item: item.start)
    middle, width = len(items) // 2, len(items) // CHECK_SAMPLE // 2
    began = time.perf_counter()
    check_placement(ordered[middle - width : middle + width], offsets)
    return CHECK_MARGIN * CHECK_SAMPLE * (time.perf_counter() - began)


def _teller(
    progress: OnProgress | None,
    part: Part,
    index: int,
    count: int,
    offsets: dict[str, int],
    bound: int,
) -> Tell:
    """Progress reports on ``part``, section ``index + 1`` of ``count``."""

    def tell(engine: str, peak: int | None = None) -> None:
        if progress is not None:
            peak = _peak(part.items, offsets) if peak is None else part.base + peak
            progress(Progress(index + 1, count, len(part.items), engine, peak, bound))

    return tell


def _nodes_per_unit(items: list[Item]) -> float:
    """Search nodes a budget unit buys on ``items`` (a node costs time per item)."""
    return NODES_PER_UNIT * NODE_COST_ITEMS / max(len(items), NODE_COST_ITEMS)


def _decide_in_rounds(
    parts: list[Part],
    offsets: dict[str, int],
    bound: int,
    budget: float,
    report: SolveReport,
    tells: list[Tell],
    deadline: Deadline | None = None,
) -> float:
    """Fit each part under ``bound`` with the decision search, resumed in rounds of
    doubling node limits while the budget lasts (or, given a ``deadline``, until it);
    return the units spent. A part that fits is written into ``offsets``; one proven
    not to fit raises the report's bound and leaves the rounds."""
    waiting = [
        (part, tell)
        for part, tell in zip(parts, tells, strict=True)
        if len(part.items) <= SEARCH_LIMIT
    ]
    deciders: dict[int, search.Decider] = {}  # made on first use: many parts, little time
    limit, spent = ROUND_NODES, 0.0

    def affordable() -> bool:
        if deadline is not None:
            return not deadline.passed()
        return spent + sum(limit / _nodes_per_unit(p.items) for p, _ in waiting) <= budget

    while waiting and affordable():
        for part, tell in waiting:
            if deadline is not None and deadline.passed():
                break
            if id(part) not in deciders:
                deciders[id(part)] = search.Decider(part.items, bound - part.base)
            decider = deciders[id(part)]

            def engine(
                items: list[Item],
                floor: int,
                attempt: _Attempt,
                decider: search.Decider = decider,
                limit: int = limit,
            ) -> None:
                decision = decider.run(limit, deadline)
                report.search_nodes += decision.nodes
                report.time_limited |= decision.timed_out
                attempt.spent = decision.nodes / _nodes_per_unit(items)
                if decision.offsets is not None:
                    attempt.best = decision.offsets
                elif decision.exhausted:  # proven: no placement fits under the floor
                    attempt.bound = max(attempt.bound, floor + 1)

            tell("search")
            spent += _run_engine(part, offsets, bound, "search", engine, report, tell)
        waiting = [
            (part, tell)
            for part, tell in waiting
            if _peak(part.items, offsets) > bound
            and (id(part) not in deciders or deciders[id(part)].answer is None)
        ]
        limit *= 2
    return spent


class Tell(Protocol):
    """Reports progress on the current section: the engine, and its peak if known."""

    def __call__(self, engine: str, peak: int | None = None) -> None: ...


def _peak(items: list[Item], offsets: Mapping[str, int]) -> int:
    return max((offsets[item.key] + item.size for item in items), default=0)


def _starting_point(
    items: list[Item], offsets: dict[str, int], deadline: Deadline | None
) -> list[Part]:
    """Split ``items`` (:func:`stacked_sections`) and rewrite ``offsets`` to match.

    Each part starts from the better of the heuristic's placement of its items
    (moved down as a whole onto its stack) and the best placer on the part alone
    (of those run before half of the time to ``deadline`` is up, if given).
    Without stacked items the parts are the sections and ``offsets`` stays.
    """
    stacked, parts = stacked_sections(items)
    if not stacked:
        return parts
    offsets.update(stacked)
    until = deadline.within(deadline.left() / 2) if deadline else None
    for part in parts:
        lowest = min(offsets[item.key] for item in part.items)
        moved = {item.key: offsets[item.key] - lowest for item in part.items}
        if until is not None and until.passed():
            offsets.update({key: part.base + offset for key, offset in moved.items()})
            continue
        fresh = place(part.items, deadline=until).offsets
        local = fresh if _peak(part.items, fresh) < _peak(part.items, moved) else moved
        offsets.update({key: part.base + offset for key, offset in local.items()})
    return parts


@dataclass(slots=True)
class _Attempt:
    """The best placement of a part so far (above its base), its proven bound, units spent."""

    best: dict[str, int]
    bound: int
    spent: float = 0.0


Engine = Callable[[list[Item], int, _Attempt], None]
"""Improves an attempt on a part's items, given the peak that is good enough."""


def _run_engine(
    whole: Part,
    offsets: dict[str, int],
    floor: int,
    label: str,
    engine: Engine,
    report: SolveReport,
    tell: Tell,
) -> float:
    """Run ``engine`` on one part, keep what it found if valid and no worse; return units spent.

    The engine works above the part's base; an exception keeps what it had found so far.
    """
    part, base = whole.items, whole.base
    known = {item.key: offsets[item.key] - base for item in part}
    attempt = _Attempt(known, max_live(part))
    try:
        engine(part, floor - base, attempt)
    except Exception as error:  # an engine's failure must not lose the heuristic plan
        report.warnings.append(
            f"{label} failed on a section of {len(part)} items ({type(error).__name__}: {error}); "
            "kept the best placement found before"
        )
    best = attempt.best
    if check_placement(part, best) or _peak(part, best) > _peak(part, known):
        report.warnings.append(
            f"{label} returned an invalid or worse placement for {len(part)} items; ignored"
        )
        best = known
    offsets.update({key: base + offset for key, offset in best.items()})
    report.bound = max(report.bound, base + attempt.bound)
    tell("done")
    return attempt.spent


@dataclass(frozen=True, slots=True)
class _Share:
    """What one part may spend: ``budget`` units or, given a ``deadline``, ``budget``
    seconds and not past it."""

    budget: float
    deadline: Deadline | None


def _exact_engines(
    solver: str, share: _Share, workers: int, report: SolveReport, tell: Tell
) -> Engine:
    """The engines on a part (:func:`_minimizer`): first, when equal lifetimes group
    (:mod:`.grouping`), on the grouped problem with :data:`GROUPED_SHARE` of the units or
    seconds, then on the part itself with the rest if a gap is left."""

    def engine(part: list[Item], floor: int, attempt: _Attempt) -> None:
        grouped = group_equal_lifetimes(part)
        if grouped is not None:
            units = share.budget * GROUPED_SHARE
            deadline = share.deadline.within(units) if share.deadline else None
            start = dict(place(grouped.items, deadline=deadline).offsets)
            trial = _Attempt(start, max_live(grouped.items))
            _minimizer(solver, _Share(units, deadline), workers, report, tell)(
                grouped.items, floor, trial
            )
            attempt.spent += trial.spent
            # trial.bound bounds the grouped problem only: grouping restricts the part.
            if _peak(grouped.items, trial.best) < _peak(part, attempt.best):
                attempt.best = grouped.expand(trial.best)
            if _peak(part, attempt.best) <= max(attempt.bound, floor):
                return
        rest = share.deadline.left() if share.deadline else share.budget - attempt.spent
        _minimizer(solver, _Share(rest, share.deadline), workers, report, tell)(
            part, floor, attempt
        )

    return engine


def _minimizer(solver: str, share: _Share, workers: int, report: SolveReport, tell: Tell) -> Engine:
    """The search, CP-SAT, or (``auto``) the search and then CP-SAT if a gap is left."""
    budget, deadline = share.budget, share.deadline

    def engine(part: list[Item], floor: int, attempt: _Attempt) -> None:
        spent = 0.0
        if solver in ("search", "auto"):
            # In ``auto`` the search proves the easy sections fast or not at all: it gets
            # half of the budget, at most AUTO_SEARCH_UNITS (with a deadline,
            # TIMED_SEARCH_SHARE of the time); CP-SAT (stronger on the hardest:
            # interlocking towers) the rest.
            nodes_per_unit = _nodes_per_unit(part)
            units = budget
            if solver == "auto":
                units = (
                    budget * TIMED_SEARCH_SHARE if deadline else min(budget / 2, AUTO_SEARCH_UNITS)
                )
            nodes = UNLIMITED_NODES if deadline else max(round(units * nodes_per_unit), 1)
            until = deadline.within(units) if deadline else None
            tell("search")
            found = search.minimize(part, attempt.best, floor, nodes, until)
            report.search_nodes += found.nodes
            report.time_limited |= found.timed_out
            spent = found.nodes / nodes_per_unit
            attempt.best, attempt.bound = found.offsets, max(attempt.bound, found.bound)
        gap_left = _peak(part, attempt.best) > max(attempt.bound, floor)
        if solver == "cpsat" or (solver == "auto" and gap_left and len(part) <= CPSAT_LIMIT):
            tell("cpsat")
            left = max(budget - spent, 0.01)
            solved = cpsat.minimize(part, attempt.best, floor, left, workers, deadline)
            report.time_limited |= solved.timed_out
            spent = budget
            attempt.best, attempt.bound = solved.offsets, max(attempt.bound, solved.bound)
        attempt.spent += spent

    return engine


def _window_engine(share: _Share, workers: int, report: SolveReport, tell: Tell) -> Engine:
    """For a part too large for one model: the local moves at its peak
    (:func:`.peaks.lower_peak`), then CP-SAT windows, each with half of the units or
    of the time (the windows: all the time left)."""

    def engine(part: list[Item], floor: int, attempt: _Attempt) -> None:
        tell("peak moves")
        half = share.deadline.within(share.deadline.left() / 2) if share.deadline else None
        lowered = peaks.lower_peak(
            part,
            attempt.best,
            floor,
            share.budget / 2,
            workers,
            lambda peak: tell("peak moves", peak),
            half,
        )
        attempt.best, attempt.spent = lowered.offsets, share.budget
        report.peak_moves += lowered.moves
        report.windows += lowered.bands
        report.window_items += lowered.band_items
        report.time_limited |= lowered.timed_out
        if _peak(part, attempt.best) <= max(floor, max_live(part)):
            return
        tell("windows")
        solved = cpsat.minimize_windows(
            part,
            attempt.best,
            floor,
            share.budget / 2,
            workers,
            lambda peak: tell("windows", peak),
            share.deadline,
        )
        attempt.best = solved.offsets
        report.windows += solved.windows
        report.window_items += solved.window_items
        report.time_limited |= solved.timed_out

    return engine
