"""The memory timeline as a PNG (matplotlib, ``Agg`` backend) for papers and issue trackers.

One row per device and tier: the timeline (x = step, y = address, one rectangle per
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
from tierplan.compiler.report.data import PlanView
from tierplan.compiler.report.html import OTHER_COLOUR, PALETTE, label_colours
from tierplan.compiler.report.units import human_bytes


def _figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("tierplan plot needs matplotlib: pip install 'tierplan[plot]'") from None
    return Figure


def timeline_png(view: PlanView, title: str, dpi: int = 110) -> bytes:
    """The PNG bytes of the timeline figure (deterministic for one plan and matplotlib)."""
    figure_class = _figure_class()
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    colours = label_colours(view)
    rows = max(len(view.regions), 1)
    figure = figure_class(figsize=(12, 3.2 * rows), layout="constrained")
    axes = figure.subplots(rows, 2, squeeze=False, width_ratios=[3, 1])
    to_bytes = FuncFormatter(lambda value, _: human_bytes(int(value)))
    for (timeline, curve_axis), region in zip(axes, view.regions, strict=False):
        members = view.region_buffers(region.key)
        drawn = [b for b in members if b.kind != "weight"] or members
        boxes = [
            [
                (b.start, b.offset),
                (b.end + 1, b.offset),
                (b.end + 1, b.offset + b.bytes),
                (b.start, b.offset + b.bytes),
            ]
            for b in drawn
        ]
        timeline.add_collection(
            PolyCollection(
                boxes,
                facecolors=[colours.get(b.label, OTHER_COLOUR) for b in drawn],
                edgecolors="white",
                linewidths=0.3,
            )
        )
        timeline.set_xlim(0, max(view.steps, 1))
        timeline.set_ylim(min(b.offset for b in drawn), max(b.offset + b.bytes for b in drawn))
        timeline.axvline(region.peak_step + 0.5, color="#d00", linestyle="--", linewidth=0.8)
        timeline.set_title(f"{region.key}: memory timeline (peak step {region.peak_step})")
        timeline.set_xlabel("step")
        timeline.set_ylabel("address")
        timeline.yaxis.set_major_formatter(to_bytes)
        curve = view.live_curve(region.key)
        curve_axis.step(range(len(curve)), curve, where="post", color=PALETTE[0], label="live")
        curve_axis.axhline(region.bound, color=PALETTE[2], linestyle="--", label="lower bound")
        curve_axis.axhline(region.peak, color=PALETTE[1], linestyle=":", label="peak")
        curve_axis.set_ylim(0, max(region.peak, 1) * 1.05)
        curve_axis.set_title(f"{region.key}: live bytes")
        curve_axis.set_xlabel("step")
        curve_axis.yaxis.set_major_formatter(to_bytes)
        curve_axis.legend(loc="lower right", fontsize=7)
    handles = [Patch(color=c, label=name) for name, c in colours.items()]
    if handles:
        figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 8))
    figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def write_timeline_png(view: PlanView, title: str, path: Path) -> None:
    """Write the timeline figure to ``path`` atomically."""
    write_atomically(path, timeline_png(view, title))
