"""Exact packing: heuristics first, then the exact engines where they leave a gap.

:func:`solve` runs the heuristic placers (the warm start), reduces the problem and
hands what is left to the decision search (:mod:`.search`), CP-SAT (:mod:`.cpsat`),
or both (``auto``: the search, then CP-SAT on what it did not prove). Reductions:

- the timeline is cut into **sections** where no item crosses a step boundary; each
  section is packed alone (an item that conflicts with nothing is a section);
- a section whose heuristic peak is already at the global lower bound (max-live of
  all the items) is **kept as is**: no section needs to go lower than that;
- sections with more items than an engine's limit stay with the heuristic;
- identical items (same steps, same size) are ordered, breaking their symmetry.

The budget is in deterministic units (CP-SAT's deterministic seconds; the search
gets :data:`NODES_PER_UNIT` nodes per unit), shared across sections, so the result
never depends on the machine's speed. An engine that fails or returns an invalid
placement is logged and ignored: the heuristic placement is never lost.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

from tierplan.compiler.packing import cpsat, search
from tierplan.compiler.packing.problem import Item, Placement, check_placement, max_live

log = logging.getLogger(__name__)

SOLVERS = ("greedy", "search", "cpsat", "auto")
"""``greedy``: heuristics only; ``search``/``cpsat``: that engine; ``auto``: both."""

NODES_PER_UNIT = 5_000
"""Search nodes per budget unit on sections of up to :data:`NODE_COST_ITEMS` items
(about one second of search on a laptop core)."""

NODE_COST_ITEMS = 100
"""A search node costs time in proportion to the section's items: larger sections
get proportionally fewer nodes per unit, so a unit stays about one second."""

SEARCH_LIMIT = 1_000
"""Largest section the search takes (its state is quadratic in the items)."""

CPSAT_LIMIT = 1_000
"""Largest section handed to CP-SAT."""


@dataclass(slots=True)
class SolveReport:
    """What one solve did, for the pass results and the CLI.

    ``status`` is OPTIMAL when the peak equals the proven ``bound``, else FEASIBLE;
    ``exact_items``/``exact_sections`` is the problem size after reduction.
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
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def gap(self) -> float:
        """Relative distance of the peak above the bound (0 when optimal)."""
        return (self.peak - self.bound) / self.bound if self.bound else 0.0

    def as_dict(self) -> dict[str, object]:
        """Plain data (for ``context.results`` and JSON), with the gap."""
        return {**asdict(self), "gap": self.gap}


def sections(items: list[Item]) -> list[list[Item]]:
    """Items grouped into maximal runs of steps that no item crosses, in step order."""
    ordered = sorted(items, key=lambda item: (item.start, item.end, item.key))
    groups: list[list[Item]] = []
    reach = -1
    for item in ordered:
        if item.start > reach:
            groups.append([])
        groups[-1].append(item)
        reach = max(reach, item.end)
    return groups


def solve(
    items: list[Item], known: Placement, solver: str, budget: float, workers: int = 1
) -> tuple[Placement, SolveReport]:
    """Improve the heuristic placement ``known`` of ``items`` with the named engine."""
    began = time.perf_counter()
    bound = max_live(items)
    parts = sections(items)
    report = SolveReport(
        solver=solver,
        status="",
        peak=known.peak,
        bound=bound,
        heuristic_peak=known.peak,
        heuristic=known.placer,
        items=len(items),
        sections=len(parts),
    )
    offsets = dict(known.offsets)
    if solver != "greedy":
        limit = CPSAT_LIMIT if solver == "cpsat" else SEARCH_LIMIT
        todo = [part for part in parts if _peak(part, offsets) > bound]
        oversized = [part for part in todo if len(part) > limit]
        if oversized:
            report.warnings.append(
                f"{len(oversized)} sections above {limit} items kept the heuristic placement"
            )
        todo = [part for part in todo if len(part) <= limit]
        report.exact_sections = len(todo)
        report.exact_items = sum(len(part) for part in todo)
        left = budget
        for index, part in enumerate(todo):
            share = left / (len(todo) - index)
            spent = _improve(part, offsets, bound, solver, share, workers, report)
            left -= min(spent, share)
    report.peak = max((offsets[item.key] + item.size for item in items), default=0)
    report.bound = max(report.bound, bound)
    report.status = "OPTIMAL" if report.peak <= report.bound else "FEASIBLE"
    report.seconds = time.perf_counter() - began
    for warning in report.warnings:
        log.warning("pack: %s", warning)
    return Placement.of(items, offsets, f"{known.placer}+{solver}"), report


def _peak(items: list[Item], offsets: dict[str, int]) -> int:
    return max(offsets[item.key] + item.size for item in items)


def _improve(
    part: list[Item],
    offsets: dict[str, int],
    floor: int,
    solver: str,
    budget: float,
    workers: int,
    report: SolveReport,
) -> float:
    """Improve ``offsets`` of one section in place; return the budget units spent."""
    known = {item.key: offsets[item.key] for item in part}
    spent = 0.0
    best, bound = known, max_live(part)
    try:
        if solver in ("search", "auto"):
            # In ``auto`` the search proves the easy sections fast or not at all: it gets
            # half of the budget, CP-SAT (stronger on some hard ones) the rest.
            nodes_per_unit = NODES_PER_UNIT * NODE_COST_ITEMS / max(len(part), NODE_COST_ITEMS)
            nodes = round(budget * nodes_per_unit / (2 if solver == "auto" else 1))
            found = search.minimize(part, known, floor, max(nodes, 1))
            report.search_nodes += found.nodes
            spent += found.nodes / nodes_per_unit
            best, bound = found.offsets, found.bound
        if solver == "cpsat" or (
            solver == "auto" and _peak(part, best) > max(bound, floor) and len(part) <= CPSAT_LIMIT
        ):
            solved = cpsat.minimize(part, best, floor, max(budget - spent, 0.01), workers)
            spent = budget
            best, bound = solved.offsets, max(bound, solved.bound)
    except Exception as error:  # an engine's failure must not lose the heuristic plan
        report.warnings.append(
            f"{solver} failed on a section of {len(part)} items ({type(error).__name__}: {error}); "
            "kept the best placement found before"
        )
    if check_placement(part, best) or _peak(part, best) > _peak(part, known):
        report.warnings.append(
            f"{solver} returned an invalid or worse placement for {len(part)} items; ignored"
        )
        best = known
    offsets.update(best)
    report.bound = max(report.bound, bound)
    return spent
