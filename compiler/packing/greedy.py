"""Greedy-by-size: the classic offset heuristic (TFLite's and Pisarchyk & Lee's baseline).

Items are taken largest first (ties: earlier start, then key), each placed at the
lowest offset where it overlaps no already-placed item in both steps and bytes.
"""

from __future__ import annotations

import numpy as np
from tierplan.compiler.packing.problem import Item


def greedy_by_size(items: list[Item]) -> dict[str, int]:
    """Offsets of ``items``, largest first, each at the lowest free offset."""
    order = sorted(items, key=lambda item: (-item.size, item.start, item.key))
    count = len(order)
    starts = np.empty(count, dtype=np.int64)
    ends = np.empty(count, dtype=np.int64)
    lows = np.empty(count, dtype=np.int64)
    highs = np.empty(count, dtype=np.int64)
    offsets: dict[str, int] = {}
    for placed, item in enumerate(order):
        live = (starts[:placed] <= item.end) & (ends[:placed] >= item.start)
        offset = lowest_gap(lows[:placed][live], highs[:placed][live], item.size)
        starts[placed], ends[placed] = item.start, item.end
        lows[placed], highs[placed] = offset, offset + item.size
        offsets[item.key] = offset
    return offsets


def lowest_gap(lows: np.ndarray, highs: np.ndarray, size: int) -> int:
    """Lowest offset >= 0 where ``size`` bytes fit between busy ranges ``[lows, highs)``."""
    candidate = 0
    for index in np.argsort(lows, kind="stable"):
        low, high = int(lows[index]), int(highs[index])
        if low - candidate >= size:
            break
        candidate = max(candidate, high)
    return candidate
