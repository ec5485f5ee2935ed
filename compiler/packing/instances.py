"""Generated packing instances known to fit exactly at max-live.

Each generator cuts a full rectangle (``steps`` wide, ``height`` units tall) into
buffers, so the cut itself is a placement at max-live = ``height`` with no byte
wasted: an exact engine can reach the bound, and any excess is the engine's. They
are hard for greedy placers because sizes and lifetimes are unrelated.

- :func:`rectangle_cuts`: random guillotine cuts, in time or in bytes;
- :func:`towers`: columns of random widths, each stacked with buffers of equal
  lifetime, and every column boundary shifted per row band so towers interlock;
- :func:`staircases`: bands of bytes cut in time at a staircase of steps, so each
  band's buffers start one step after the band below's.

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


def lifetimes(count: int, seed: int, unit: int = 64) -> list[Item]:
    """``count`` random buffers shaped like a network's activations (short lives,
    a few long skips, sizes over two orders of magnitude), for scaling runs."""
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.integers(0, count, size=count))
    spans = np.where(
        rng.random(count) < 0.05, rng.integers(1, 200, size=count), rng.integers(1, 6, size=count)
    )
    sizes = (2 ** rng.integers(0, 8, size=count)) * rng.integers(1, 4, size=count)
    return [
        Item(key=f"t{index}", start=int(start), end=int(start + span), size=int(size) * unit)
        for index, (start, span, size) in enumerate(zip(starts, spans, sizes, strict=True))
    ]
