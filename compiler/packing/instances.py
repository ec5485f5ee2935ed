"""Generated packing instances known to fit exactly at max-live.

Each generator cuts a full rectangle (``steps`` wide, ``height`` units tall) into
buffers, so the cut itself is a placement at max-live = ``height`` with no byte
wasted: an exact engine can reach the bound, and any excess is the engine's. They
are hard for greedy placers because sizes and lifetimes are unrelated.

- :func:`rectangle_cuts`: random guillotine cuts, in time or in bytes;
- :func:`towers`: columns of random widths, each stacked with buffers of equal
  lifetime, and every column boundary shifted per row band so towers interlock;
- :func:`staircases`: bands of bytes cut in time at a staircase of steps, so each
  band's buffers start one step after the band below's;
- :func:`cut_blocks`: for scaling runs, many cut rectangles side by side in time on a
  shared long-lived baseline (one section of 1k to 100k buffers).

and one that is not cut from a rectangle:

- :func:`production_like`: a compiler's trace in shape: buffers produced along a
  schedule, most read within a few steps, 2% alive for a long stretch, sizes a
  power of two times 1-3 (greedy-size lands 0.5-1% above max-live at 20k buffers;
  the optimum is not known).

Sizes are multiples of ``unit`` (an alignment); seeds make every instance
reproducible.
"""

from __future__ import annotations

import itertools

import numpy as np
from tierplan.compiler.packing.problem import Item


def _items(pieces: list[tuple[int, int, int, int]], unit: int, prefix: str) -> list[Item]:
    """Items from rectangles ``(first step, last step, low, high)`` in units."""
    return [
        Item(key=f"{prefix}{index}", start=first, end=last, size=(high - low) * unit)
        for index, (first, last, low, high) in enumerate(pieces)
    ]


def rectangle_cuts(
    count: int, seed: int, steps: int = 64, height: int = 256, unit: int = 64
) -> list[Item]:
    """``count`` buffers from random guillotine cuts of a ``steps`` x ``height`` rectangle."""
    rng = np.random.default_rng(seed)
    pieces = [(0, steps - 1, 0, height)]
    while len(pieces) < count:
        widths = np.array([(p[1] - p[0] + 1) * (p[3] - p[2]) for p in pieces], dtype=np.float64)
        splittable = np.array([p[1] > p[0] or p[3] - p[2] > 1 for p in pieces])
        if not splittable.any():
            break
        weights = widths * splittable
        index = int(rng.choice(len(pieces), p=weights / weights.sum()))
        first, last, low, high = pieces.pop(index)
        in_time = last > first and (high - low == 1 or rng.random() < 0.5)
        if in_time:
            cut = int(rng.integers(first, last))
            pieces += [(first, cut, low, high), (cut + 1, last, low, high)]
        else:
            cut = int(rng.integers(low + 1, high))
            pieces += [(first, last, low, cut), (first, last, cut, high)]
    return _items(pieces, unit, "cut")


def towers(columns: int, bands: int, seed: int, steps: int = 64, unit: int = 64) -> list[Item]:
    """Interlocking towers: per band of bytes, columns cut at shifted steps, then
    each column of a band stacked with 1-3 buffers of the same lifetime."""
    rng = np.random.default_rng(seed)
    pieces = []
    low = 0
    for _ in range(bands):
        band = int(rng.integers(4, 17))
        cuts = np.sort(rng.choice(np.arange(1, steps), size=columns - 1, replace=False))
        bounds = [0, *cuts.tolist(), steps]
        for first, after in itertools.pairwise(bounds):
            heights = np.sort(
                rng.choice(np.arange(1, band), size=int(rng.integers(0, 3)), replace=False)
            )
            levels = [low, *(low + heights).tolist(), low + band]
            pieces += [(first, after - 1, a, b) for a, b in itertools.pairwise(levels)]
        low += band
    return _items(pieces, unit, "tower")


def staircases(bands: int, seed: int, steps: int = 64, unit: int = 64) -> list[Item]:
    """Bands of bytes, each cut in time every few steps starting one step later than
    the band below: a staircase of lifetimes with unrelated sizes."""
    rng = np.random.default_rng(seed)
    pieces = []
    low = 0
    for band_index in range(bands):
        band = int(rng.integers(1, 9))
        stride = int(rng.integers(3, 9))
        cuts = list(range(band_index % stride + 1, steps, stride))
        bounds = [0, *cuts, steps]
        pieces += [
            (first, after - 1, low, low + band)
            for first, after in itertools.pairwise(bounds)
            if after > first
        ]
        low += band
    return _items(pieces, unit, "stair")


def cut_blocks(
    count: int,
    seed: int,
    block: int = 100,
    steps: int = 64,
    height: int = 256,
    baseline: int = 4,
    unit: int = 64,
) -> list[Item]:
    """About ``count`` buffers: blocks of ``block`` random guillotine cuts laid side by
    side in time, each block ``steps`` long and between half and all of ``height``
    tall, on a shared baseline of ``baseline`` buffers alive throughout (one unit
    tall each). It fits at max-live (baseline plus the tallest block) by construction,
    greedy lands above it in the tall blocks, and the baseline makes the whole set one
    section, as a network's long-lived tensors do. Every block is cut at once (numpy
    over blocks), so 100k buffers take about a second."""
    rng = np.random.default_rng(seed)
    blocks = max(-(-(count - baseline) // block), 1)
    tall = rng.integers(height // 2, height + 1, size=blocks)
    tall[rng.integers(blocks)] = height  # max-live is reached
    owner = np.arange(blocks)
    first, last = owner * steps, owner * steps + steps - 1
    low, high = np.zeros(blocks, dtype=np.int64), tall.astype(np.int64)
    for _ in range(block - 1):
        splittable = (last > first) | (high - low > 1)
        weight = (last - first + 1) * (high - low) * splittable
        # One piece per block, drawn with probability proportional to its area
        # (Efraimidis-Spirakis keys: the largest log(u) / weight of each block wins).
        key = np.where(weight > 0, np.log(rng.random(len(owner))) / np.maximum(weight, 1), -np.inf)
        order = np.lexsort((key, owner))
        chosen = order[np.flatnonzero(np.diff(owner[order], append=blocks) != 0)]
        chosen = chosen[np.isfinite(key[chosen])]
        a, b, c, d = first[chosen], last[chosen], low[chosen], high[chosen]
        in_time = (b > a) & ((d - c == 1) | (rng.random(len(chosen)) < 0.5))
        draw = rng.random(len(chosen))
        time_cut = a + (draw * (b - a)).astype(np.int64)  # last step of the first half
        byte_cut = c + 1 + (draw * np.maximum(d - c - 1, 0)).astype(np.int64)
        last[chosen] = np.where(in_time, time_cut, b)
        high[chosen] = np.where(in_time, d, byte_cut)
        owner = np.concatenate((owner, owner[chosen]))
        first = np.concatenate((first, np.where(in_time, time_cut + 1, a)))
        last = np.concatenate((last, b))
        low = np.concatenate((low, np.where(in_time, c, byte_cut)))
        high = np.concatenate((high, d))
    pieces = [(0, blocks * steps - 1, level, level + 1) for level in range(baseline)]
    pieces += zip(
        first.tolist(),
        last.tolist(),
        (low + baseline).tolist(),
        (high + baseline).tolist(),
        strict=True,
    )
    return _items(pieces, unit, "block")


def production_like(count: int, seed: int, unit: int = 64) -> list[Item]:
    """``count`` buffers shaped like a compiler's trace (see the module docstring):
    starts spread over ``count / 4`` steps, geometric lifetimes (mean about three
    steps), 2% long-lived (a twentieth to a quarter of the schedule)."""
    rng = np.random.default_rng(seed)
    steps = max(count // 4, 1)
    starts = np.sort(rng.integers(0, steps, size=count))
    lives = np.minimum(rng.geometric(0.3, size=count), steps)
    long_lived = rng.random(count) < 0.02
    lives[long_lived] = rng.integers(max(steps // 20, 1), max(steps // 4, 2), size=long_lived.sum())
    ends = np.minimum(starts + lives, steps - 1)
    sizes = 2 ** rng.integers(0, 9, size=count) * rng.integers(1, 4, size=count) * unit
    return [
        Item(key=f"buffer{index}", start=start, end=end, size=size)
        for index, (start, end, size) in enumerate(
            zip(starts.tolist(), ends.tolist(), sizes.tolist(), strict=True)
        )
    ]
