"""The fit search's Pareto frontier, drawn: a PNG (``tierplan fit --plot``) and an SVG for the report.

Both read the plan's ``summary.fit`` (``docs/plan-summary.md``): x = activation
peak, y = modelled latency, one marker per frontier point (a square for 16-bit
numerics), the chosen plan ringed in red, points over the budget hollow.
"""

from __future__ import annotations

import io
from html import escape
from pathlib import Path
from typing import Any

from tierplan.compiler.files import write_atomically
from tierplan.compiler.report.plot import _figure_class
from tierplan.compiler.report.units import human_bytes

WIDTH, HEIGHT, MARGIN = 560, 300, 48


def frontier_png(fit: dict[str, Any], title: str, dpi: int = 110) -> bytes:
    """The PNG bytes of the frontier chart."""
    figure = _figure_class()(figsize=(7, 4), layout="constrained")
    axis = figure.subplots()
    points = fit["frontier"]
    for point in points:
        marker = "o" if point["numerics"] == "exact" else "s"
        filled = "#1f77b4" if point["fits"] else "none"
        axis.scatter(
            point["activation_peak_bytes"] / 2**20,
            point["latency_s"] * 1e3,
            marker=marker,
            facecolors=filled,
            edgecolors="#1f77b4",
            s=40,
        )
        if point["chosen"]:
            axis.scatter(
                point["activation_peak_bytes"] / 2**20,
                point["latency_s"] * 1e3,
                s=160,
                facecolors="none",
                edgecolors="#d00",
                label=f"chosen: {point['options']}",
            )
    xs = [p["activation_peak_bytes"] / 2**20 for p in points]
    ys = [p["latency_s"] * 1e3 for p in points]
    axis.plot(xs, ys, color="#1f77b4", linewidth=0.6, alpha=0.5)
    axis.set_xlabel("activation peak (MiB)")
    axis.set_ylabel("modelled latency (ms)")
    axis.set_title(title)
    axis.legend(loc="upper right", fontsize=7, frameon=False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def write_frontier_png(fit: dict[str, Any], title: str, path: Path) -> None:
    """Write the frontier chart to ``path`` atomically."""
    write_atomically(path, frontier_png(fit, title))


def frontier_section(plan: dict[str, Any]) -> str:
    """The report's section for a plan made by ``fit`` or ``compile --budget`` ('' otherwise)."""
    fit = plan.get("summary", {}).get("fit")
    if not isinstance(fit, dict) or not fit.get("frontier"):
        return ""
    points = fit["frontier"]
    xs = [float(p["activation_peak_bytes"]) for p in points]
    ys = [float(p["latency_s"]) for p in points]

    def scale(value: float, low: float, high: float, size: int) -> float:
        return MARGIN + (value - low) / ((high - low) or 1) * (size - 2 * MARGIN)

    marks = []
    for point, x, y in zip(points, xs, ys, strict=True):
        cx = scale(x, min(xs), max(xs), WIDTH)
        cy = HEIGHT - scale(y, min(ys), max(ys), HEIGHT)
        fill = "#1f77b4" if point["fits"] else "none"
        ring = '<circle r="9" fill="none" stroke="#d00"/>' if point["chosen"] else ""
        tip = escape(
            f"{point['options']}: {human_bytes(int(x))}, {y * 1e3:.3f} ms, "
            f"{point['numerics']}{', chosen' if point['chosen'] else ''}"
        )
        marks.append(
            f'<g transform="translate({cx:.1f},{cy:.1f})"><title>{tip}</title>'
            f'<circle r="5" fill="{fill}" stroke="#1f77b4"/>{ring}</g>'
        )
    axes = (
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" text-anchor="middle">activation peak '
        f"({human_bytes(int(min(xs)))} to {human_bytes(int(max(xs)))})</text>"
        f'<text x="12" y="{HEIGHT / 2}" transform="rotate(-90 12 {HEIGHT / 2})" '
        f'text-anchor="middle">latency ({min(ys) * 1e3:.3f} to {max(ys) * 1e3:.3f} ms)</text>'
    )
    return (
        f"<h2>Fit: Pareto frontier (budget {escape(str(fit.get('budget', '?')))})</h2>"
        f"<p>Chosen (ringed): {escape(str(fit.get('chosen', '?')))}; {fit.get('compiles', '?')} "
        "combinations compiled; hollow: over the budget; hover a point for its options.</p>"
        f'<svg width="{WIDTH}" height="{HEIGHT}" font-size="11">{axes}{"".join(marks)}</svg>'
    )
