"""The placement heuristics by name, and :func:`place`, which runs one or all of them."""

from __future__ import annotations

import time
from collections.abc import Callable

from tierplan.compiler.packing.clock import Deadline
from tierplan.compiler.packing.greedy import (
    best_fit_by_conflicts,
    first_fit_in_schedule_order,
    greedy_by_breadth,
    greedy_by_size,
)
from tierplan.compiler.packing.problem import Item, Placement, Placer
from tierplan.compiler.packing.recreate import ruin_and_recreate
from tierplan.compiler.packing.skyline import (
    OutOfTime,
    by_length,
    by_size,
    skyline,
    skyline_by_length,
    skyline_by_size,
)

PLACERS: dict[str, Placer] = {
    "greedy-size": greedy_by_size,
    "greedy-breadth": greedy_by_breadth,
    "best-fit-conflicts": best_fit_by_conflicts,
    "first-fit-schedule": first_fit_in_schedule_order,
    "ruin-recreate": ruin_and_recreate,
    "skyline-length": skyline_by_length,
    "skyline-size": skyline_by_size,
}

SKYLINE_MAX_ITEMS = 20_000
"""Largest region ``best`` gives the skyline placers: each is slower than the greedy
placers together on large regions (placement_scale's 100k lifetimes: 8.8 s, cut blocks
on a shared baseline: 5.1 s, on a machine at load 9), and a skyline flat over many
steps makes each of its turns scan many items."""

FIRST_SHARE = 0.8
"""Share of the time left that a time-limited ``best`` gives its first placer at most."""

_STOPPABLE: dict[str, Callable[[list[Item], Deadline], dict[str, int]]] = {
    "greedy-size": greedy_by_size,
    "skyline-length": lambda items, deadline: skyline(items, by_length, deadline),
    "skyline-size": lambda items, deadline: skyline(items, by_size, deadline),
}
"""Placers that look at a deadline: greedy-size stacks what it has not placed by then,
the skyline placers give up (:class:`OutOfTime`)."""


def place(items: list[Item], strategy: str = "best", deadline: Deadline | None = None) -> Placement:
    """Place ``items`` with the named placer, or with every placer for ``"best"`` (the
    skyline placers up to :data:`SKYLINE_MAX_ITEMS` items).

    With a ``deadline``, ``greedy-size`` goes first, and stacks what it has not placed
    when :data:`FIRST_SHARE` of the time left has passed; the other placers follow in registry order while the
    time left exceeds the longest one so far and half of the time left after the
    first is not spent (the exact engines need the rest); a skyline placer still
    running at that point is dropped.
    """
    if strategy != "best":
        return Placement.of(items, PLACERS[strategy](items), strategy)
    names = [
        name
        for name in PLACERS
        if len(items) <= SKYLINE_MAX_ITEMS or not name.startswith("skyline")
    ]
    if deadline is None:
        placements = [Placement.of(items, PLACERS[name](items), name) for name in names]
        return min(placements, key=lambda placement: placement.peak)
    began = time.perf_counter()
    # The first placer keeps a fifth of the time for what follows it (the limit allows
    # a tenth more): on 100k buffers, checking and writing them out take seconds.
    first = deadline.within(deadline.left() * FIRST_SHARE)
    results = [Placement.of(items, greedy_by_size(items, first), "greedy-size")]
    longest = time.perf_counter() - began
    until = deadline.within(deadline.left() / 2)
    for name in names[1:]:
        if until.left() <= longest:
            break
        began = time.perf_counter()
        stoppable = _STOPPABLE.get(name)
        try:
            offsets = stoppable(items, until) if stoppable else PLACERS[name](items)
        except OutOfTime:
            break
        results.append(Placement.of(items, offsets, name))
        longest = max(longest, time.perf_counter() - began)
    return min(results, key=lambda placement: placement.peak)
