"""Pool sizing: the arena a runtime should preallocate per device and tier, and its warning line.

A runtime that preallocates one pool per device and tier sizes it from the plan's
peak plus a safety margin (``headroom``: 0.2 adds a fifth), rounded up to the
target's alignment and never above the tier's capacity; it warns when the bytes in
use cross ``warn_at`` of that pool. With the defaults (0.2 and 0.85) the planned
peak sits at 83% of the pool, just under the warning line: a warning means the
runtime holds more than the plan said it would.

:func:`pool_sizing` returns the ``summary.pools`` object of ``plan.json``
(``docs/plan-summary.md``)::

    {"headroom": 0.2, "warn_at": 0.85,
     "arena_bytes": {"0/DDR": 123456, ...}, "warn_bytes": {"0/DDR": 104937, ...}}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from tierplan.compiler.errors import InputError
from tierplan.compiler.target import Target

DEFAULT_HEADROOM = 0.2
DEFAULT_WARN_AT = 0.85
MAX_HEADROOM = 10.0


class PoolSizing(TypedDict):
    """``summary.pools``: the margins used and, per ``"<device>/<tier>"``, the bytes."""

    headroom: float
    warn_at: float
    arena_bytes: dict[str, int]
    warn_bytes: dict[str, int]


def check_margins(headroom: float, warn_at: float) -> None:
    """One clear error for a margin outside its range (``--headroom``, ``--warn-at``)."""
    if not (math.isfinite(headroom) and 0 <= headroom <= MAX_HEADROOM):
        raise InputError(f"--headroom must be between 0 and {MAX_HEADROOM:g}, got {headroom!r}")
    if not (math.isfinite(warn_at) and 0 < warn_at <= 1):
        raise InputError(f"--warn-at must be above 0 and at most 1, got {warn_at!r}")


def pool_sizing(
    peak_bytes: Mapping[str, int],
    target: Target,
    headroom: float = DEFAULT_HEADROOM,
    warn_at: float = DEFAULT_WARN_AT,
) -> PoolSizing:
    """Arena and warning line per region of ``peak_bytes`` (the plan summary's)."""
    check_margins(headroom, warn_at)
    arenas: dict[str, int] = {}
    warnings: dict[str, int] = {}
    for key, peak in sorted(peak_bytes.items()):
        capacity = target.tier(key.split("/", 1)[1]).capacity
        # A plan never exceeds its tier, so the pool fits the tier whatever the margin.
        arena = min(capacity, target.align_up(math.ceil(peak * (1 + headroom))))
        arenas[key] = arena
        warnings[key] = math.floor(arenas[key] * warn_at)
    return PoolSizing(headroom=headroom, warn_at=warn_at, arena_bytes=arenas, warn_bytes=warnings)


def add_pool_sizing(plan: dict[str, Any], target: Target, headroom: float, warn_at: float) -> None:
    """Write ``summary.pools`` into ``plan`` (in place)."""
    plan["summary"]["pools"] = pool_sizing(plan["summary"]["peak_bytes"], target, headroom, warn_at)


def pool_line(pools: PoolSizing, human: Callable[[int], str]) -> str:
    """One line for the terminal: each region's arena and warning line."""
    regions = ", ".join(
        f"{key} {human(arena)} (warn at {human(pools['warn_bytes'][key])})"
        for key, arena in pools["arena_bytes"].items()
    )
    return (
        f"pools to preallocate (peak + {pools['headroom']:.0%}, warn at "
        f"{pools['warn_at']:.0%}): {regions}"
    )
