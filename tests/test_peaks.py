"""The local moves at the peak of a large placement (compiler/packing/peaks.py).

Every result goes through :func:`check_placement`, and none may end above the
placement it started from.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tierplan.compiler.packing import Item, check_placement, cpsat, exact, max_live, place, solve
from tierplan.compiler.packing.clock import Deadline
from tierplan.compiler.packing.instances import production_like
from tierplan.compiler.packing.peaks import _Search, lower_peak

UNIT = 64


def peak(items: list[Item], offsets: dict[str, int]) -> int:
    return max(offsets[item.key] + item.size for item in items)


def test_peak_moves_reach_max_live_where_the_windows_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small windows and sections stand in for a 20k-buffer trace: the item at the peak
    # lives beside more items than the largest window holds.
    monkeypatch.setattr(exact, "CPSAT_LIMIT", 100)
    monkeypatch.setattr(exact, "SEARCH_LIMIT", 100)
    monkeypatch.setattr(cpsat, "WINDOW_LIMIT", 40)
    monkeypatch.setattr(cpsat, "WINDOW_ITEMS", 10)
    items = production_like(400, 2)
    known = place(items)
    bound = max_live(items)
    windows = cpsat.minimize_windows(items, dict(known.offsets), 0, 2.0, 1)
    assert known.peak > windows.peak > bound  # what the flow before the moves ended with
    runs = [solve(items, known, "auto", 2.0) for _ in range(2)]
    placement, report = runs[0]
    assert not check_placement(items, placement.offsets)
    assert placement.peak == bound and report.status == "OPTIMAL"
    assert runs[1][0].offsets == placement.offsets  # deterministic


def test_moves_lower_a_placement_from_where_it_stands() -> None:
    # The moves alone, from the heuristic's placement (no fresh start).
    items = production_like(800, 2)
    known = dict(place(items, "greedy-size").offsets)
    search = _Search(items, known, 0, 1)
    search.restart(search.lows, 2.0, None)
    search.run(None)
    found = {item.key: int(low) for item, low in zip(items, search.lows.tolist(), strict=True)}
    assert not check_placement(items, found)
    assert search.moves > 0 and peak(items, found) < peak(items, known)


def test_the_fresh_start_packs_the_busiest_step_without_a_hole() -> None:
    items = production_like(2000, 1)
    search = _Search(items, dict(place(items).offsets), 0, 1)
    search.left = 1.0
    lows = search.column_first(None)
    assert lows is not None
    offsets = {item.key: int(low) for item, low in zip(items, lows.tolist(), strict=True)}
    assert not check_placement(items, offsets)
    step = int(search.points[int(np.argmax(search.live))])
    column = [item for item in items if item.start <= step <= item.end]
    assert sum(item.size for item in column) == max_live(items)
    assert max(offsets[item.key] + item.size for item in column) == max_live(items)


def test_a_passed_deadline_keeps_the_known_placement() -> None:
    items = production_like(400, 2)
    known = dict(place(items, "greedy-size").offsets)
    lowered = lower_peak(items, known, 0, 2.0, 1, deadline=Deadline.after(0))
    assert lowered.offsets == known and lowered.moves == 0


def test_a_placement_at_max_live_is_left_alone() -> None:
    items = [Item("a", 0, 3, UNIT), Item("b", 1, 2, 2 * UNIT), Item("c", 4, 5, 3 * UNIT)]
    known = {"a": 0, "b": UNIT, "c": 0}
    assert lower_peak(items, known, 0, 1.0, 1).offsets == known


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 20), st.integers(0, 6), st.integers(1, 8)),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(["greedy-size", "first-fit-schedule", "best-fit-conflicts"]),
)
def test_moves_never_worsen_or_break_a_placement(
    spec: list[tuple[int, int, int]], placer: str
) -> None:
    items = [
        Item(f"i{index}", first, first + length, size * UNIT)
        for index, (first, length, size) in enumerate(spec)
    ]
    known = dict(place(items, placer).offsets)
    runs = [lower_peak(items, known, 0, 0.2, 1) for _ in range(2)]
    lowered = runs[0].offsets
    assert not check_placement(items, lowered)
    assert max_live(items) <= peak(items, lowered) <= peak(items, known)
    assert runs[1].offsets == lowered  # deterministic
