"""Placement heuristics: every placer gives a valid placement, never below max-live."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tierplan.compiler import intervals
from tierplan.compiler.intervals import Overlaps
from tierplan.compiler.packing import PLACERS, Item, check_placement, max_live, place
from tierplan.compiler.packing.greedy import fit_offset


@st.composite
def item_lists(draw: st.DrawFn) -> list[Item]:
    """Up to 60 items over up to 40 steps, sizes multiples of 64 (some equal, some huge)."""
    items = []
    for index in range(draw(st.integers(0, 60))):
        start = draw(st.integers(0, 40))
        end = start + draw(st.integers(0, 15))
        size = 64 * draw(st.sampled_from([1, 1, 2, 3, 16, 100, 1000]))
        items.append(Item(f"t{index}", start, end, size))
    return items


@pytest.mark.parametrize("name", sorted(PLACERS))
@given(items=item_lists())
def test_every_placer_gives_a_valid_placement_at_or_above_max_live(
    name: str, items: list[Item]
) -> None:
    placement = place(items, name)
    assert set(placement.offsets) == {item.key for item in items}
    assert check_placement(items, placement.offsets) == []
    assert all(offset >= 0 and offset % 64 == 0 for offset in placement.offsets.values())
    assert placement.peak >= max_live(items)


@given(items=item_lists())
def test_best_keeps_the_lowest_peak_and_is_deterministic(items: list[Item]) -> None:
    best = place(items, "best")
    peaks = {name: place(items, name).peak for name in PLACERS}
    assert best.peak == min(peaks.values())
    assert best.placer == min(PLACERS, key=lambda name: (peaks[name], list(PLACERS).index(name)))
    assert place(list(items), "best").offsets == best.offsets


@given(items=item_lists())
def test_overlaps_match_the_pairs_that_share_a_step(items: list[Item]) -> None:
    overlaps = Overlaps.of(items)
    for index, item in enumerate(items):
        expected = sorted(
            other
            for other, candidate in enumerate(items)
            if other != index and candidate.start <= item.end and item.start <= candidate.end
        )
        assert sorted(overlaps.neighbours(index).tolist()) == expected
        weight = item.size + sum(items[other].size for other in expected)
        assert overlaps.conflict_bytes()[index] == weight


def test_placers_reuse_bytes_of_items_that_never_meet() -> None:
    # Three generations: each dies before the next is born, so one slot suffices.
    items = [Item(f"t{i}", 2 * i, 2 * i + 1, 128) for i in range(3)]
    for name in PLACERS:
        assert place(items, name).peak == 128, name


@pytest.mark.parametrize("name", sorted(PLACERS))
def test_an_empty_buffer_takes_no_space(name: str) -> None:
    items = [Item("a", 0, 3, 128), Item("empty", 2, 5, 0), Item("b", 4, 6, 64)]
    placement = place(items, name)
    assert placement.peak == 128 and not check_placement(items, placement.offsets)


@pytest.mark.parametrize(
    ("size", "best_fit", "expected"),
    [(128, False, 0), (128, True, 320), (64, True, 320), (256, True, 0), (300, True, 512)],
)
def test_first_fit_takes_the_lowest_hole_best_fit_the_smallest(
    size: int, best_fit: bool, expected: int
) -> None:
    # Busy [256, 320) and [448, 512): holes of 256 bytes at 0 and 128 bytes at 320.
    busy_lows, busy_sizes = np.array([448, 256]), np.array([64, 64])
    assert fit_offset(busy_lows, busy_sizes, size, best_fit) == expected


def test_ruin_and_recreate_fixes_residuals_that_greedy_stacks_above_the_bound() -> None:
    # Transformer-like: per layer two large buffers, a residual alive across two
    # layers (each overlaps the next one), one small mask alive throughout.
    items = [Item("mask", 0, 50, 64)]
    for layer in range(4):
        first = 10 * layer
        items.append(Item(f"residual{layer}", first + 2, first + 12, 256))
        items += [Item(f"big{layer}_{i}", first + 5, first + 8, 1024) for i in range(2)]
    assert place(items, "greedy-size").peak > max_live(items)
    placement = place(items, "ruin-recreate")
    assert placement.peak == max_live(items)
    assert not check_placement(items, placement.offsets)


def test_skyline_puts_long_lived_buffers_down_first_where_the_greedy_placers_do_not() -> None:
    # Found by a random search: every other placer ends 64-128 bytes above max-live.
    spans = [(20, 21, 256), (3, 23, 256), (9, 9, 256), (10, 10, 512), (16, 28, 256)]
    spans += [(18, 30, 128), (18, 38, 64), (6, 18, 128), (12, 14, 64)]
    items = [Item(f"t{i}", start, end, size) for i, (start, end, size) in enumerate(spans)]
    others = [name for name in PLACERS if not name.startswith("skyline")]
    assert min(place(items, name).peak for name in others) > max_live(items)
    placement = place(items, "skyline-length")
    assert placement.peak == max_live(items) == place(items).peak
    assert not check_placement(items, placement.offsets)


@pytest.mark.parametrize("seed", range(5))
def test_conflicts_found_when_asked_equal_the_stored_ones(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    items = []
    for index in range(rng.randint(1, 120)):
        start = rng.randrange(40)
        items.append(Item(f"i{index}", start, rng.randint(start, 45), rng.choice([64, 192])))
    stored = Overlaps.sweep(items)
    monkeypatch.setattr(intervals, "PAIR_LIMIT", 0)
    asked = Overlaps.sweep(items)
    assert asked.earlier is None and stored.earlier is not None
    for index in range(len(items)):
        assert asked.neighbours(index).tolist() == stored.neighbours(index).tolist()
    assert asked.conflict_bytes().tolist() == stored.conflict_bytes().tolist()
