"""Numbers as people read them in tables and tooltips (shared by HTML and terminal)."""

from __future__ import annotations

from collections.abc import Mapping

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
