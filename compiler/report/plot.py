"""The memory timeline as a PNG (matplotlib, ``Agg`` backend) for papers and issue trackers.

One row per device and tier, the one nearest its capacity first: the timeline (x = step, y = address, one rectangle per
buffer coloured by producer op type, weights summarised below the activations) and
beside it the live-bytes curve with the lower bound. matplotlib is the optional extra
``tierplan[plot]``; without it :func:`write_timeline_png` raises an :class:`InputError`
that says how to install it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from tierplan.compiler.errors import InputError
from tierplan.compiler.files import write_atomically
from tierplan.compiler.report.colours import BOUND, LIVE, PEAK, label_colours
from tierplan.compiler.report.data import PlanView
from tierplan.compiler.report.units import byte_ticks, tick_label


def _figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("tierplan plot needs matplotlib: pip install 'tierplan[plot]'") from None
    return Figure


def _byte_axis(axis: Any, low: float, high: float) -> None:
    """Round byte ticks (50KiB, 100KiB ...) on ``axis`` between ``low`` and ``high``."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    ticks, name, unit = byte_ticks(low, high)
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda value, _: tick_label(value, name, unit)))


# The live-bytes chart leaves this much room above the peak for its legend.
LEGEND_ROOM = 1.4


def timeline_figure(view: PlanView, title: str) -> Any:
    """The matplotlib figure: one row per region, most important first (see
    :meth:`PlanView.regions_by_importance`)."""
    figure_class = _figure_class()
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    colours = label_colours(view)
    regions = view.regions_by_importance()
    rows = max(len(regions), 1)
    figure = figure_class(figsize=(12, 3.2 * rows), layout="constrained")
    axes = figure.subplots(rows, 2, squeeze=False, width_ratios=[3, 1])
    for (timeline, curve_axis), region in zip(axes, regions, strict=False):
        members = view.region_buffers(region.key)
        drawn = [b for b in members if b.kind != "weight"] or members
        boxes = [
            [
                (b.start, b.offset),
                (b.end + 1, b.offset),
                (b.end + 1, b.offset + b.nbytes),
                (b.start, b.offset + b.nbytes),
            ]
            for b in drawn
        ]
        timeline.add_collection(
            PolyCollection(
                boxes,
                facecolors=[colours[view.made_by(b)] for b in drawn],
                edgecolors="white",
                linewidths=0.3,
            )
        )
        timeline.set_xlim(0, max(view.steps, 1))
        low, high = min(b.offset for b in drawn), max(b.offset + b.nbytes for b in drawn)
        timeline.set_ylim(low, high)
        timeline.axvline(region.peak_step + 0.5, color="#d00", linestyle="--", linewidth=0.8)
        timeline.set_title(f"{region.key}: memory timeline (peak step {region.peak_step})")
        timeline.set_xlabel("step")
        timeline.set_ylabel("address")
        _byte_axis(timeline.yaxis, low, high)
        curve = view.live_curve(region.key)
        curve_axis.step(range(len(curve)), curve, where="post", color=LIVE, label="live")
        curve_axis.axhline(region.bound, color=BOUND, linestyle="--", label="lower bound")
        curve_axis.axhline(region.peak, color=PEAK, linestyle=":", label="peak")
        top = max(region.peak, 1) * LEGEND_ROOM
        curve_axis.set_ylim(0, top)
        curve_axis.set_title(f"{region.key}: live bytes")
        curve_axis.set_xlabel("step")
        _byte_axis(curve_axis.yaxis, 0, top)
        # In the empty band above the peak, so that it never covers the curve.
        curve_axis.legend(loc="upper center", fontsize=7, ncols=3, frameon=False)
    handles = [Patch(color=c, label=name) for name, c in colours.items()]
    if handles:
        figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 8))
    figure.suptitle(title)
    return figure


def timeline_png(view: PlanView, title: str, dpi: int = 110) -> bytes:
    """The PNG bytes of the timeline figure (deterministic for one plan and matplotlib)."""
    buffer = io.BytesIO()
    timeline_figure(view, title).savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def write_timeline_png(view: PlanView, title: str, path: Path) -> None:
    """Write the timeline figure to ``path`` atomically."""
    write_atomically(path, timeline_png(view, title))
