"""One colour per producer op type, the same in every model and every view.

A colour is picked from :data:`PALETTE` by a CRC-32 of the op type's name, so a
Conv is the same colour in ResNet and in BERT, in the HTML report and in the PNG.
Buffers no operator made (graph inputs, weights) have colours of their own,
outside the palette, so they never look like an op type's.
"""

from __future__ import annotations

from zlib import crc32

from tierplan.compiler.report.data import NO_PRODUCER, PlanView

# Tableau 20 without its greys (kept for the labels below).
PALETTE = (
    "#4e79a7", "#a0cbe8", "#f28e2b", "#ffbe7d", "#59a14f", "#8cd17d", "#b6992d",
    "#f1ce63", "#499894", "#86bcb6", "#e15759", "#ff9d9a", "#d37295", "#fabfd2",
    "#b07aa1", "#d4a6c8", "#9d7660", "#d7b5a6",
)  # fmt: skip
FIXED = {NO_PRODUCER["input"]: "#3a3a3a", NO_PRODUCER["weight"]: "#a8a8a8", "(scratch)": "#79706e"}
# Lines of the live-bytes charts.
LIVE, BOUND, PEAK, CAPACITY = "#4e79a7", "#59a14f", "#f28e2b", "#e15759"


def colour_of(label: str) -> str:
    """The colour of a buffer label (an op type, or ``(graph input)`` ...)."""
    return FIXED.get(label) or PALETTE[crc32(label.encode()) % len(PALETTE)]


def label_colours(view: PlanView) -> dict[str, str]:
    """The colour of every label drawn in ``view``, biggest total bytes first (legend order)."""
    drawn = [b for b in view.buffers if b.kind != "weight"] or view.buffers
    return {label: colour_of(label) for label in view.op_type_order(drawn)}
