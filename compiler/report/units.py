"""Numbers as people read them in tables and tooltips (shared by HTML and terminal)."""

from __future__ import annotations

from collections.abc import Mapping
from math import ceil, floor, log10

from tierplan.compiler.report.data import Region

REGION_COLUMNS = (
    "device/tier", "capacity", "peak", "lower bound", "fragmentation", "efficiency",
    "buffers", "peak step",
)  # fmt: skip


def human_bytes(count: int) -> str:
    """``1536`` -> ``"1.5KiB"``: one decimal in the largest unit not above the count.

    >>> human_bytes(512), human_bytes(1536), human_bytes(3 * 2**30)
    ('512B', '1.5KiB', '3.0GiB')
    """
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return f"{count}B"


def traffic_text(by_tier: Mapping[str, int]) -> str:
    """Bytes moved per tier as one phrase: ``"DDR 738.4KiB, L2 3.1MiB"``."""
    return ", ".join(f"{tier} {human_bytes(count)}" for tier, count in by_tier.items()) or "none"


BYTE_UNITS = (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10), ("B", 1))


def round_step(span: float, count: int = 5) -> float:
    """The 1, 2 or 5 x 10^k step that cuts ``span`` into at most about ``count`` parts.

    >>> round_step(1000), round_step(7), round_step(0.3)
    (200.0, 2.0, 0.1)
    """
    raw = max(span, 1e-12) / count
    power = 10 ** floor(log10(raw))
    return float(next(f * power for f in (1, 2, 5, 10) if f * power >= raw))


def byte_ticks(low: float, high: float, count: int = 6) -> tuple[list[float], str, int]:
    """Round byte ticks in ``[low, high]``: 1, 2 or 5 x 10^k of the unit of ``high``
    (KiB, MiB ...), with that unit's name and size: labels read "50KiB", "100KiB", not
    "48.8KiB".

    >>> ticks, name, unit = byte_ticks(0, 256 * 1024)
    >>> [tick_label(t, name, unit) for t in ticks]
    ['0KiB', '50KiB', '100KiB', '150KiB', '200KiB', '250KiB']
    """
    name, unit = next((n, u) for n, u in BYTE_UNITS if u <= max(high, 1))
    step = round_step(max(high - low, 1) / unit, count)
    first = ceil(low / unit / step - 1e-9)
    last = floor(high / unit / step + 1e-9)
    return [k * step * unit for k in range(first, last + 1)], name, unit


def tick_label(value: float, name: str, unit: int) -> str:
    """A tick value in its axis unit: ``51200`` in KiB -> ``"50KiB"``."""
    return f"{round(value / unit, 6):g}{name}"


def percent(share: float) -> str:
    """``0.1234`` -> ``"12.3%"``."""
    return f"{share * 100:.1f}%"


def region_cells(region: Region) -> list[str]:
    """One summary row per device and tier, in the order of :data:`REGION_COLUMNS`."""
    return [
        region.key,
        human_bytes(region.capacity),
        human_bytes(region.peak),
        human_bytes(region.bound),
        f"{region.fragmentation:.3f}",
        percent(region.efficiency),
        str(region.buffers),
        str(region.peak_step),
    ]
