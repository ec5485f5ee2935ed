"""Exact decision search for offsets, after MiniMalloc (Moffitt, ASPLOS 2023).

The question "do these items fit in ``capacity`` bytes?" is answered by a depth-first
search over the order in which items are placed, with the paper's reductions:

- **canonical offsets**: any placement can be pushed down until every item rests at 0
  or on the top of an item alive at a common step, so only those offsets are tried;
- **monotonic floor**: items are placed in non-decreasing offset order, so the placed
  items form a *skyline* (per step, the highest top) and the next item's offset is the
  skyline's maximum over its lifetime (its *floor*). Each node decides one open step
  at the skyline's lowest level: which item sits there, or none (that level is wasted
  there). Among the steps at that level it takes the one the fewest items can cover
  (*fail first*: a step only one item fits is settled before any guess is made);
- **value order**: items whose top would be flush with the skyline next to their life
  first (:func:`_candidates`), then larger, then longer-lived;
- **inference**: a branch dies when an item cannot fit above its floor; when, at some
  step, the items that can still go below a level (those with a lower floor) cannot
  fill up to it without wasting more than the step's spare bytes (:func:`_fillable`);
  or when a step with no spare byte can no longer get an item exactly on its skyline
  (:func:`_tileable`);
- **dominance**: a failed state (placed set, skyline) prunes every later state with
  the same placed set and a skyline at least as high everywhere; among identical
  items (same steps and size) only the first remaining one is tried;
- **restarts**: dives of growing node limits, each after the first with seeded random
  ties among equally flush items, so an early mistake does not sink the whole budget;
- a **node budget** bounds the work deterministically; a time-limited solve also
  stops at its :class:`~tierplan.compiler.packing.clock.Deadline` (checked every
  :data:`CLOCK_NODES` nodes), and the answer then says the clock ended it; a
  time-limited :func:`minimize` takes the items bottom first in the known placement
  (the value order's last tie-break is the item's index).

:func:`minimize` wraps the decision in a search on the capacity, from the lower bound
up to a known placement's peak. Timeline sections (steps no item crosses) are split
by the caller (:mod:`tierplan.compiler.packing.exact`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import gcd

import numpy as np
from tierplan.compiler.intervals import live_bytes_per_step
from tierplan.compiler.packing.clock import Deadline
from tierplan.compiler.packing.problem import Item, max_live

CLOCK_NODES = 64
"""Nodes between two looks at the clock of a time-limited search."""


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of one decision search.

    ``offsets`` is a placement within the capacity, or None. ``exhausted`` is True
    when the answer is proven (a placement found, or every branch refuted) and False
    when the node budget ran out first, or the deadline passed (``timed_out``).
    """

    offsets: dict[str, int] | None
    exhausted: bool
    nodes: int
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class Minimum:
    """Best placement found by :func:`minimize`, its peak and the proven lower bound;
    ``timed_out`` when the deadline ended the search."""

    offsets: dict[str, int]
    peak: int
    bound: int
    nodes: int
    timed_out: bool = False


class _Instance:
    """The items in search form: sizes in units of their gcd, steps compressed.

    Two closed intervals overlap exactly when the later start lies in both, so each
    item is represented by the range of distinct start steps it covers.
    """

    def __init__(self, items: list[Item]) -> None:
        self.items = items
        self.unit = 0
        for item in items:
            self.unit = gcd(self.unit, item.size)
        self.unit = self.unit or 1
        points = np.unique(np.array([item.start for item in items], dtype=np.int64))
        starts = np.array([item.start for item in items], dtype=np.int64)
        ends = np.array([item.end for item in items], dtype=np.int64)
        self.first = np.searchsorted(points, starts)
        self.last = np.searchsorted(points, ends, side="right") - 1
        self.sizes = np.array([item.size // self.unit for item in items], dtype=np.int64)
        self.steps = len(points)
        self.overlap = (self.first[:, None] <= self.last[None, :]) & (
            self.first[None, :] <= self.last[:, None]
        )
        # Identical items (same steps, same size) are interchangeable: number each
        # group so that only its lowest-index remaining member is branched on.
        signature: dict[tuple[int, int, int], int] = {}
        self.group = np.empty(len(items), dtype=np.int64)
        for index, item in enumerate(items):
            self.group[index] = signature.setdefault((item.start, item.end, item.size), index)
        steps = np.arange(self.steps)
        self.cover = (self.first[:, None] <= steps) & (steps <= self.last[:, None])
        self.live = live_bytes_per_step(
            np.column_stack((self.first, self.last, self.sizes)), self.steps
        )


@dataclass(slots=True)
class _Node:
    sky: np.ndarray  # per compressed step, the highest top of the placed items
    closed: np.ndarray  # per step, no remaining item may sit exactly at its skyline
    floor: np.ndarray  # per item, the skyline's maximum over its lifetime
    remaining: np.ndarray  # per item, not yet placed
    live: np.ndarray  # per step, the units of remaining items alive there
    mask: int  # placed items as a bit set (the dominance cache's key)
    lowest: int = 0  # the open step at the lowest level where the next decision is made
    candidates: list[int] = field(default_factory=list)  # items, then CLOSE
    next: int = 0


CLOSE = -1
"""The branch "no item sits at the lowest step's skyline": that level is wasted there."""


def fits(
    items: list[Item], capacity: int, node_budget: int, deadline: Deadline | None = None
) -> Decision:
    """Find offsets that keep every item below ``capacity`` bytes, within ``node_budget``
    (and before ``deadline``, if given)."""
    return Decider(items, capacity).run(node_budget, deadline)


TIMED_FIRST_TRY = 0.75
"""Share of a time-limited :func:`minimize`'s seconds for the decision at the bound."""

RESTART_NODES = 64
"""Nodes of the first dive; each restart gets :data:`RESTART_GROWTH` times more."""

RESTART_GROWTH = 1.5


class Decider:
    """The decision search for one capacity, resumable: each :meth:`run` goes on where
    the previous one stopped, so a caller can share a budget between several problems
    in rounds without repeating work.

    The search is a series of dives of growing node limits, each with different
    (seeded) ties in the value order: a depth-first search that errs near the root
    spends its budget deep below the mistake, and restarting with another order
    escapes it. Refuted states stay in the dominance cache across dives, and a dive
    that ends without hitting its limit has searched everything, so an exhausted
    answer is still a proof.
    """

    def __init__(self, items: list[Item], capacity: int) -> None:
        self.items = items
        self.instance = _Instance(items) if items else None
        self.capacity = capacity // self.instance.unit if self.instance else capacity
        self.failed: dict[int, list[np.ndarray]] = {}
        self.limit = float(RESTART_NODES)
        self.dive = 0
        self.answer: Decision | None = None if items else Decision({}, exhausted=True, nodes=0)

    def run(self, node_budget: int, deadline: Deadline | None = None) -> Decision:
        """Search on for at most ``node_budget`` nodes, and not past ``deadline``;
        ``nodes`` in the answer counts this call's. A proven answer (found or refuted)
        is final."""
        if self.answer is not None or self.instance is None:
            return self.answer or Decision(None, exhausted=False, nodes=0)
        nodes = 0
        while True:
            last = nodes + self.limit >= node_budget
            shuffle = None if self.dive == 0 else np.random.default_rng(self.dive)
            dive_budget = node_budget - nodes if last else int(self.limit)
            offsets, exhausted, spent = _dive(
                self.instance, self.capacity, dive_budget, self.failed, shuffle, deadline
            )
            nodes += spent
            self.limit *= RESTART_GROWTH
            self.dive += 1
            if offsets is not None:
                unit = self.instance.unit
                keyed = {item.key: int(offsets[i]) * unit for i, item in enumerate(self.items)}
                self.answer = Decision(keyed, exhausted=True, nodes=nodes)
                return self.answer
            if exhausted:
                self.answer = Decision(None, exhausted=True, nodes=nodes)
                return self.answer
            if deadline is not None and deadline.passed():
                return Decision(None, exhausted=False, nodes=nodes, timed_out=True)
            if last:
                return Decision(None, exhausted=False, nodes=nodes)


def _dive(
    instance: _Instance,
    capacity: int,
    budget: int,
    failed: dict[int, list[np.ndarray]],
    shuffle: np.random.Generator | None,
    deadline: Deadline | None = None,
) -> tuple[np.ndarray | None, bool, int]:
    """Depth-first search; each node decides one open step at the lowest level: one
    child per item that can sit at its skyline covering it, and one that closes it
    (unless the step has no byte to spare). ``shuffle`` randomizes the value order's
    ties (None: the default order). Stops, unexhausted, when ``deadline`` passes."""
    count = len(instance.items)
    offsets = np.zeros(count, dtype=np.int64)
    root = _settle(
        instance,
        _Node(
            sky=np.zeros(instance.steps, dtype=np.int64),
            closed=np.zeros(instance.steps, dtype=bool),
            floor=np.zeros(count, dtype=np.int64),
            remaining=np.ones(count, dtype=bool),
            live=instance.live.copy(),
            mask=0,
        ),
        capacity,
        failed,
        shuffle,
    )
    stack = [root] if root is not None else []
    nodes = 0
    while stack:
        node = stack[-1]
        if node.next == len(node.candidates):
            failed.setdefault(node.mask, []).append(_level(node))
            stack.pop()
            continue
        if nodes >= budget or (
            deadline is not None and nodes % CLOCK_NODES == 0 and deadline.passed()
        ):
            return None, False, nodes
        nodes += 1
        chosen = node.candidates[node.next]
        node.next += 1
        moved = _close(node) if chosen == CLOSE else _place(instance, node, chosen)
        child = _settle(instance, moved, capacity, failed, shuffle)
        if child is None:
            continue
        if chosen != CLOSE:
            offsets[chosen] = node.floor[chosen]
        if not child.remaining.any():
            return offsets, True, nodes
        stack.append(child)
    return None, True, nodes


def _level(node: _Node) -> np.ndarray:
    """The skyline with closed steps half a unit higher: what dominance compares."""
    level: np.ndarray = 2 * node.sky + node.closed
    return level


def _place(instance: _Instance, node: _Node, chosen: int) -> _Node:
    top = int(node.floor[chosen] + instance.sizes[chosen])
    first, last = instance.first[chosen], instance.last[chosen] + 1
    sky = node.sky.copy()
    sky[first:last] = top
    closed = node.closed.copy()
    closed[first:last] = False
    remaining = node.remaining.copy()
    remaining[chosen] = False
    floor = np.where(instance.overlap[chosen], np.maximum(node.floor, top), node.floor)
    live = node.live.copy()
    live[first:last] -= instance.sizes[chosen]
    return _Node(sky, closed, floor, remaining, live, node.mask | (1 << chosen))


def _close(node: _Node) -> _Node:
    closed = node.closed.copy()
    closed[node.lowest] = True
    return _Node(node.sky, closed, node.floor, node.remaining, node.live, node.mask)


def _settle(
    instance: _Instance,
    node: _Node,
    capacity: int,
    failed: dict[int, list[np.ndarray]],
    shuffle: np.random.Generator | None,
) -> _Node | None:
    """Check ``node`` against the capacity and the dominance cache, and choose the
    step it decides and its candidates; None if it is refuted."""
    if not node.remaining.any():
        return node
    level = _level(node)
    if any((level >= worse).all() for worse in failed.get(node.mask, ())):
        return None
    remaining = node.remaining
    if (node.floor[remaining] + instance.sizes[remaining] > capacity).any():
        return None
    busy = node.live > 0
    open_steps = np.flatnonzero(busy & ~node.closed)
    if open_steps.size == 0:
        return None
    floor = int(node.sky[open_steps].min())
    at_floor = open_steps[node.sky[open_steps] == floor]
    # Fail first: the step at the lowest level that the fewest items can sit on.
    counts = instance.cover[node.remaining & (node.floor == floor)][:, at_floor].sum(axis=0)
    lowest = int(at_floor[np.argmin(counts)])
    spare = capacity - node.sky - node.live  # bytes each step may still leave unused
    if (spare[busy & node.closed] < 1).any() or not _fillable(instance, node, spare, floor):
        return None
    tight = busy & (node.sky + node.live == capacity)
    if tight.any() and not _tileable(instance, node, tight):
        return None
    node.lowest = lowest
    node.candidates = _candidates(instance, node, floor, shuffle)
    if spare[lowest] > 0:  # else wasting the level there would leave no byte to spare
        node.candidates.append(CLOSE)
    return node


def _fillable(instance: _Instance, node: _Node, spare: np.ndarray, floor: int) -> bool:
    """Whether, at every step, the remaining items can fill the space above its skyline.

    A remaining item sits at or above its own floor and at or above ``floor`` (offsets
    never decrease). So at a step, the bytes from the skyline up to any level ``y``
    can only be covered by the items alive there whose floor is below ``y``; whatever
    they leave uncovered is lost and must fit in the step's ``spare`` bytes. Checked
    at every item's floor (where the set of items below changes).
    """
    remaining = np.flatnonzero(node.remaining)
    floors = np.maximum(node.floor[remaining], floor)
    order = np.argsort(floors, kind="stable")
    remaining, floors = remaining[order], floors[order]
    cover = instance.cover[remaining]
    stacked = np.cumsum(cover * instance.sizes[remaining, None], axis=0)
    # Bytes alive at each step from items with a floor strictly below each item's.
    below = np.vstack((np.zeros(instance.steps, dtype=np.int64), stacked))[
        np.searchsorted(floors, floors, side="left")
    ]
    lost = floors[:, None] - node.sky[None, :] - below
    return not (cover & (lost > spare[None, :])).any()


def _tileable(instance: _Instance, node: _Node, tight: np.ndarray) -> bool:
    """Whether every tight step (no byte to spare above its skyline) can still get an
    item sitting exactly on its skyline.

    Such an item has its floor at that level, and the items at one level are disjoint
    in time: per level, some disjoint set of them must cover all its tight steps.
    """
    sky = node.sky.tolist()
    needs: dict[int, list[int]] = {}
    for step in np.flatnonzero(tight).tolist():
        needs.setdefault(sky[step], []).append(step)
    pool = np.flatnonzero(node.remaining & np.isin(node.floor, list(needs)))
    if node.closed.any():  # an item crossing a closed step at its level cannot sit there
        blocked = instance.cover[pool] & node.closed & (node.sky == node.floor[pool, None])
        pool = pool[~blocked.any(axis=1)]
    spans: dict[int, dict[int, list[int]]] = {level: {} for level in needs}
    for first, last, level in zip(
        instance.first[pool].tolist(),
        instance.last[pool].tolist(),
        node.floor[pool].tolist(),
        strict=True,
    ):
        spans[level].setdefault(first, []).append(last + 1)
    return all(_covers(spans[level], need) for level, need in needs.items())


def _covers(spans: dict[int, list[int]], need: list[int]) -> bool:
    """Whether disjoint intervals (``spans``: first step -> ends after the last step)
    can cover every step of ``need`` (sorted): a sweep over the positions reachable
    with every needed step before them covered."""
    goal = need[-1]
    needed = set(need)
    reach = [False] * (goal + 2)
    start = min(need[0], min(spans, default=need[0]))
    for position in range(start, need[0] + 1):
        reach[position] = True
    for position in range(start, goal + 1):
        if not reach[position]:
            continue
        if position not in needed:
            reach[position + 1] = True
        for end in spans.get(position, ()):
            if end > goal:
                return True
            reach[end] = True
    return reach[goal + 1]


def _candidates(
    instance: _Instance, node: _Node, floor: int, shuffle: np.random.Generator | None
) -> list[int]:
    """Items that can sit at ``floor`` over the lowest step, in branching order.

    Items whose top would be flush with the skyline just before or just after their
    life come first: in a packing without waste every top meets another item's
    bottom, and continuing a neighbour's level keeps the skyline in few, wide steps.
    Then larger, then longer-lived, or, when ``shuffle`` is given, in a seeded random
    order. One per group of identical items.
    """
    step = node.lowest
    covering = np.flatnonzero(
        node.remaining & (instance.first <= step) & (instance.last >= step) & (node.floor == floor)
    )
    first, last = instance.first[covering], instance.last[covering]
    top = floor + instance.sizes[covering]
    sky = np.concatenate(([-1], node.sky, [-1]))  # no level outside the timeline
    flush = (top == sky[first]).astype(np.int64) + (top == sky[last + 2])
    ties = (
        (covering, first - last, -instance.sizes[covering])
        if shuffle is None
        else (shuffle.random(covering.size),)
    )
    order = np.lexsort((*ties, -flush))
    blocked = node.closed & (node.sky == floor)
    result: list[int] = []
    groups: set[int] = set()
    for index in covering[order]:
        group = int(instance.group[index])
        if group in groups or blocked[instance.first[index] : instance.last[index] + 1].any():
            continue
        result.append(int(index))
        groups.add(group)
    return result


def minimize(
    items: list[Item],
    known: dict[str, int],
    floor: int,
    node_budget: int,
    deadline: Deadline | None = None,
) -> Minimum:
    """Lowest peak found for ``items``, starting from the placement ``known``, within
    ``node_budget`` nodes and before ``deadline`` (if given).

    Capacities are tried from the lower bound (max-live, or ``floor`` if higher: a
    caller packing several independent sections needs none below the others' bound)
    upward, bisecting between the highest refuted capacity and the best placement
    (also when the try at the lower bound ran out of nodes: it gets half the budget, or,
    with a deadline, :data:`TIMED_FIRST_TRY` of the time).
    The returned ``bound`` is max-live raised by every refuted capacity.
    """
    best = dict(known)
    peak = max((best[item.key] + item.size for item in items), default=0)
    bound = max_live(items)
    unit = 0
    for item in items:
        unit = gcd(unit, item.size)
    unit = unit or 1
    low = max(bound, -(-floor // unit) * unit)
    nodes = 0
    first = True
    timed_out = False
    if deadline is not None:
        # Ties in the value order go by item index: bottom first in the known placement,
        # a time-limited search settles towers 8x12 #5 in 1.3k nodes, in (start, end)
        # order not in 35k (kept as is without a deadline: the plans stay the same).
        items = sorted(items, key=lambda item: (known[item.key], item.start, item.key))
    while low < peak and nodes < node_budget and not (deadline and deadline.passed()):
        # The first try is the lower bound itself: often it fits, which proves optimality.
        # It gets half of the budget, so that a failure leaves some to lower the peak.
        capacity = low if first else low + (peak - low) // unit // 2 * unit
        share = (node_budget - nodes + 1) // 2 if first else node_budget - nodes
        # With a deadline, most of the time goes to the first try: a gap left above the
        # bound is CP-SAT's to close after the search (in ``auto``), and bisecting with
        # spare bytes is slow where the bound is hard (interlocking towers).
        until = (
            deadline.within(deadline.left() * TIMED_FIRST_TRY) if deadline and first else deadline
        )
        decision = fits(items, capacity, share, until)
        nodes += decision.nodes + 1
        timed_out = timed_out or decision.timed_out
        if decision.offsets is not None:
            best = decision.offsets
            peak = max(best[item.key] + item.size for item in items)
        elif decision.exhausted:
            bound = max(bound, capacity + unit)
            low = capacity + unit
        elif not first:
            break
        first = False
    return Minimum(offsets=best, peak=peak, bound=bound, nodes=nodes, timed_out=timed_out)
