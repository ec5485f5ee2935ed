"""The interval index, and the overlap sweep built on it (packers and validator)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from tierplan.compiler import intervals
from tierplan.compiler.intervals import IntervalIndex, sharing_pairs
from tierplan.compiler.plan import PlanBuffer


@pytest.mark.parametrize("seed", range(10))
def test_the_index_finds_exactly_the_overlapping_intervals(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.randint(1, 300)
    index: IntervalIndex[int] = IntervalIndex(size)
    stored: dict[int, tuple[int, int]] = {}
    for item in range(400):
        if stored and rng.random() < 0.3:
            gone = rng.choice(sorted(stored))
            index.remove(gone, *stored.pop(gone))
        low = rng.randrange(size)
        stored[item] = (low, rng.randint(low, min(size - 1, low + rng.choice([0, 5, size]))))
        index.add(item, *stored[item])
        query = sorted(rng.randrange(size) for _ in range(2))
        expected = [i for i, (a, b) in stored.items() if a <= query[1] and query[0] <= b]
        assert sorted(index.overlapping(*query)) == expected


def _pairs_by_scanning(buffers: list[PlanBuffer]) -> Iterator[tuple[PlanBuffer, PlanBuffer]]:
    """The validator's sweep over partial buffers as first written: every live one tested."""
    active: list[PlanBuffer] = []
    for b in sorted(buffers, key=lambda b: b.start):
        active = [a for a in active if a.end >= b.start]
        for a in active:
            if a.offset < b.offset + b.nbytes and b.offset < a.offset + a.nbytes:
                yield a, b
        active.append(b)


@pytest.mark.parametrize("seed", range(10))
def test_the_overlap_sweep_reports_the_pairs_of_a_full_scan_by_start(seed: int) -> None:
    rng = random.Random(seed)
    last = 50
    buffers = []
    for index in range(rng.randint(0, 120)):
        start = rng.randint(1, last - 1)  # never whole-schedule: the sweep's part
        end = rng.randint(start, last - 1)
        offset = rng.choice([0, 64, 128]) + rng.randrange(0, 4096, 64)
        size = rng.choice([1, 64, 100, 512])
        buffers.append(
            PlanBuffer(index, f"t{index}", "activation", size, 0, "DDR", offset, start, end, None)
        )
    boxes = [(b.start, b.end, b.offset, b.nbytes) for b in buffers]
    found = list(sharing_pairs(boxes, last))
    assert sorted(found) == sorted((a.index, b.index) for a, b in _pairs_by_scanning(buffers))
    # In start order (ties: index order), by the earlier buffer, then the later one.
    rank = {b.index: r for r, b in enumerate(sorted(buffers, key=lambda b: b.start))}
    assert found == sorted(found, key=lambda pair: (rank[pair[0]], rank[pair[1]]))


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_the_overlap_sweep_finds_the_same_pairs_in_chunks_of_any_size(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(chunk)
    boxes = []
    for _ in range(200):
        start = rng.randint(1, 40)
        boxes.append((start, rng.randint(start, 45), rng.randrange(0, 2048, 64), 64))
    whole = list(sharing_pairs(boxes, 50))
    monkeypatch.setattr(intervals, "PAIR_CHUNK", chunk)
    assert list(sharing_pairs(boxes, 50)) == whole
    assert whole  # 200 boxes of 64 bytes in 2 KiB over 45 steps must meet somewhere


def test_intervals_that_end_before_they_start_meet_nothing_later() -> None:
    # A hostile plan's ranges (the validator reports them): no crash, no pair among them.
    assert list(sharing_pairs([(5, 2, 0, 64), (6, 1, 0, 64), (7, 7, 32, 64)])) == []
