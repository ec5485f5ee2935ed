"""Equal lifetimes stacked as one item (compiler/packing/grouping.py), and the exact
engines' first try on that grouped problem."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tierplan.compiler.packing import Item, check_placement, max_live, place, solve
from tierplan.compiler.packing.clock import Deadline
from tierplan.compiler.packing.grouping import GROUP_SUFFIX, group_equal_lifetimes
from tierplan.compiler.packing.instances import towers


def test_equal_lifetimes_stack_up_to_the_tallest_item() -> None:
    items = [
        Item("a", 0, 3, 64),
        Item("b", 0, 3, 128),
        Item("tall", 2, 5, 256),
        Item("c", 4, 6, 192),
        Item("d", 4, 6, 128),  # with c: 320 bytes, taller than the tallest item
        Item("e", 1, 1, 64),
    ]
    grouped = group_equal_lifetimes(items)
    assert grouped is not None
    assert [item.key for item in grouped.items] == ["a" + GROUP_SUFFIX, "e", "tall", "c", "d"]
    block = grouped.items[0]
    assert (block.start, block.end, block.size) == (0, 3, 192)
    assert [member.key for member in grouped.members[block.key]] == ["b", "a"]  # larger first
    expanded = grouped.expand({item.key: 1000 for item in grouped.items})
    assert expanded == {"b": 1000, "a": 1128, "e": 1000, "tall": 1000, "c": 1000, "d": 1000}


def test_nothing_to_group() -> None:
    assert group_equal_lifetimes([Item("a", 0, 1, 64), Item("b", 1, 2, 64)]) is None
    assert group_equal_lifetimes([]) is None


def test_a_group_named_like_an_item_stays_apart() -> None:
    items = [Item("a", 0, 1, 64), Item("b", 0, 1, 64), Item("a" + GROUP_SUFFIX, 3, 4, 128)]
    assert group_equal_lifetimes(items) is None


lifetimes = st.tuples(st.integers(0, 12), st.integers(0, 4)).map(lambda t: (t[0], t[0] + t[1]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(lifetimes, st.integers(1, 8)), min_size=1, max_size=40))
def test_a_placement_of_the_groups_places_every_item(
    drawn: list[tuple[tuple[int, int], int]],
) -> None:
    items = [
        Item(f"t{index}", start, end, size * 64) for index, ((start, end), size) in enumerate(drawn)
    ]
    grouped = group_equal_lifetimes(items)
    if grouped is None:
        return
    placed = place(grouped.items)
    offsets = grouped.expand(placed.offsets)
    assert set(offsets) == {item.key for item in items}
    assert not check_placement(items, offsets)
    assert max(offsets[item.key] + item.size for item in items) == placed.peak


@pytest.mark.parametrize(("solver", "seconds"), [("search", None), ("auto", None), ("auto", 20.0)])
def test_interlocking_towers_fit_at_max_live_through_their_groups(
    solver: str, seconds: float | None
) -> None:
    # Without the grouped try, the default budget ends towers 8x12 #4 8% above
    # max-live (auto: 1.080, search alone no lower), and 30 s of auto 7% above.
    items = towers(8, 12, 4)
    deadline = Deadline.after(seconds) if seconds else None
    placement, report = solve(items, place(items), solver, 2.0, deadline=deadline)
    assert not check_placement(items, placement.offsets)
    assert placement.peak == max_live(items)
    assert report.status == "OPTIMAL"
