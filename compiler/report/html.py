"""The HTML report: one self-contained file (inline SVG, CSS and a few lines of JS).

It opens from disk with no network access: no external scripts, styles or fonts.
Every name that comes from the model (tensor, operator, op type, model path) goes
through :func:`html.escape`; a model is untrusted input. Tooltips are SVG
``<title>`` elements, and the hover panel copies their ``textContent``, so no model
text is ever parsed as markup. Sizes stay small: one ``<rect>`` per buffer and one
polyline per region.
"""

from __future__ import annotations

from html import escape
from math import log10

import numpy as np
from tierplan.compiler.allocators import ALLOCATORS, simulate
from tierplan.compiler.allocators import requests as allocator_requests
from tierplan.compiler.evaluation import ACTIVATION_KINDS
from tierplan.compiler.plan import memory_summary
from tierplan.compiler.report.data import Buffer, PlanView, Region, op_type_order
from tierplan.compiler.report.units import (
    REGION_COLUMNS,
    human_bytes,
    percent,
    region_cells,
    traffic_text,
)

PALETTE = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
    "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#86bcb6", "#d37295",
)  # fmt: skip
OTHER_COLOUR = "#cccccc"
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 1000, 320, 80, 20, 20, 30

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 20px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}
td:first-child,th:first-child{text-align:left}
svg{background:#fafafa;border:1px solid #ddd}
svg text{font-size:11px;fill:#444}
.legend span{display:inline-block;margin-right:12px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
#info{position:fixed;right:12px;bottom:12px;background:#fff;border:1px solid #999;
padding:6px 10px;white-space:pre;font-size:12px;display:none}
.row{display:flex;gap:24px;flex-wrap:wrap}
"""

# Hover panel: copies the hovered rectangle's <title> as text (never as HTML).
SCRIPT = """
(function(){
  var info=document.getElementById('info');
  document.querySelectorAll('svg.timeline').forEach(function(svg){
    svg.setAttribute('data-hover','on');
    svg.addEventListener('mouseover',function(e){
      var t=e.target.querySelector&&e.target.querySelector('title');
      if(t){info.textContent=t.textContent;info.style.display='block';}
    });
    svg.addEventListener('mouseleave',function(){info.style.display='none';});
  });
})();
"""


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A table; cells must already be escaped."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def label_colours(view: PlanView) -> dict[str, str]:
    """A colour per producer op type, biggest total bytes first (shared with the PNG)."""
    labels = op_type_order(b for b in view.buffers if b.kind != "weight")
    return {label: PALETTE[i] for i, label in enumerate(labels[: len(PALETTE)])}


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values in ``[low, high]``."""
    span = max(high - low, 1.0)
    step = 10 ** int(log10(span / count))
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= count:
            step *= factor
            break
    first = -(-low // step) * step
    return [float(v) for v in np.arange(first, high + step / 2, step) if v <= high]


def _axes(x_max: int, y_low: int, y_high: int) -> str:
    """Axis labels: steps along x, bytes along y."""
    parts = []
    for value in _ticks(0, max(x_max, 1)):
        x = LEFT + value / max(x_max, 1) * WIDTH
        parts.append(
            f'<text x="{x:.1f}" y="{TOP + HEIGHT + 16}" text-anchor="middle">{int(value)}</text>'
        )
    for value in _ticks(y_low, max(y_high, y_low + 1)):
        y = TOP + HEIGHT - (value - y_low) / max(y_high - y_low, 1) * HEIGHT
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{human_bytes(int(value))}</text>'
            f'<line x1="{LEFT}" x2="{LEFT + WIDTH}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>'
        )
    return "".join(parts)


def _peak_marker(view: PlanView, region: Region) -> str:
    x = LEFT + (region.peak_step + 0.5) / max(view.steps, 1) * WIDTH
    return (
        f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + HEIGHT}" stroke="#d00" '
        f'stroke-dasharray="4 3"/><text x="{x + 4:.1f}" y="{TOP + 12}" fill="#d00">'
        f"peak step {region.peak_step}</text>"
    )


def _tooltip(buffer: Buffer) -> str:
    made = f"{buffer.producer} ({buffer.producer_type})" if buffer.producer else buffer.label
    alias = f"\nalias of {buffer.alias_of}" if buffer.alias_of else ""
    return escape(
        f"{buffer.tensor}\n{human_bytes(buffer.bytes)} ({buffer.bytes} B) at {buffer.offset:#x}"
        f"\nsteps [{buffer.start}, {buffer.end}]\nproducer: {made}{alias}"
    )


def timeline_svg(view: PlanView, region: Region, colours: dict[str, str]) -> tuple[str, str]:
    """The memory timeline of one region, and a caption (weights are summarised, not drawn)."""
    members = view.region_buffers(region.key)
    drawn = [b for b in members if b.kind != "weight"] or members
    low = min(b.offset for b in drawn)
    high = max(b.offset + b.bytes for b in drawn)
    sx = WIDTH / max(view.steps, 1)
    sy = HEIGHT / max(high - low, 1)
    rects = []
    for b in sorted(drawn, key=lambda b: (b.offset, b.start, b.tensor)):
        y = TOP + HEIGHT - (b.offset + b.bytes - low) * sy
        rects.append(
            f'<rect x="{LEFT + b.start * sx:.1f}" y="{y:.1f}" width="{(b.end - b.start + 1) * sx:.1f}" '
            f'height="{max(b.bytes * sy, 0.5):.1f}" fill="{colours.get(b.label, OTHER_COLOUR)}" '
            f'stroke="#fff" stroke-width="0.3"><title>{_tooltip(b)}</title></rect>'
        )
    svg = (
        f'<svg class="timeline" id="timeline-{escape(region.key)}" width="{LEFT + WIDTH + RIGHT}" '
        f'height="{TOP + HEIGHT + BOTTOM}">{_axes(view.steps, low, high)}{"".join(rects)}'
        f"{_peak_marker(view, region)}</svg>"
    )
    weights = [b for b in members if b.kind == "weight" and b not in drawn]
    caption = f"x: step, y: address; {len(drawn)} buffers drawn"
    if weights:
        caption += f"; {len(weights)} weights ({human_bytes(region.weight_bytes)}) below {low:#x} not drawn"
    return svg, caption


def live_curve_svg(view: PlanView, region: Region) -> str:
    """Bytes live per step, with the lower bound and (when on scale) the capacity."""
    curve = view.live_curve(region.key)
    top = max(region.peak, region.bound, 1)
    on_scale = region.capacity and region.capacity <= 2 * top
    if on_scale:
        top = max(top, region.capacity)
    sx = WIDTH / max(view.steps, 1)
    sy = HEIGHT / top
    points = []
    for step, value in enumerate(curve.tolist()):
        y = TOP + HEIGHT - value * sy
        points.append(f"{LEFT + step * sx:.1f},{y:.1f} {LEFT + (step + 1) * sx:.1f},{y:.1f}")
    lines = [
        f'<polyline fill="none" stroke="#4e79a7" stroke-width="1.5" points="{" ".join(points)}"/>'
    ]
    # Label positions differ so that equal values (peak == bound) stay readable.
    for value, colour, name, x, anchor in (
        (region.bound, "#59a14f", "lower bound", LEFT + WIDTH - 4, "end"),
        (region.peak, "#f28e2b", "peak (placed)", LEFT + WIDTH * 0.6, "end"),
        *(
            [(region.capacity, "#e15759", "capacity", LEFT + WIDTH * 0.3, "end")]
            if on_scale
            else []
        ),
    ):
        y = TOP + HEIGHT - value * sy
        lines.append(
            f'<line x1="{LEFT}" x2="{LEFT + WIDTH}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" '
            f'stroke-dasharray="6 3"/><text x="{x:.1f}" y="{y - 3:.1f}" '
            f'text-anchor="{anchor}" fill="{colour}">{name} {human_bytes(value)}</text>'
        )
    return (
        f'<svg class="curve" width="{LEFT + WIDTH + RIGHT}" height="{TOP + HEIGHT + BOTTOM}">'
        f"{_axes(view.steps, 0, top)}{''.join(lines)}{_peak_marker(view, region)}</svg>"
    )


def _summary(view: PlanView) -> str:
    rows = [[escape(cell) for cell in region_cells(r)] for r in view.regions]
    return _table(list(REGION_COLUMNS), rows)


def _allocators(view: PlanView) -> str:
    """Pool and buddy allocators on each region's activations, beside the static plan."""
    rows = []
    peaks, bounds = memory_summary(view.plan["buffers"], set(ACTIVATION_KINDS))
    for region, requests in allocator_requests(view.plan, ACTIVATION_KINDS).items():
        capacity = view.region(region).capacity
        static, bound = peaks[region], bounds[region]
        fragmentation = percent(static / bound - 1) if bound else "-"
        rows.append([escape(region), "static plan", human_bytes(static), fragmentation, "0"])
        for name in ALLOCATORS:
            run = simulate(name, requests, capacity)
            rows.append(
                [
                    escape(region),
                    name,
                    human_bytes(run.footprint),
                    percent(run.fragmentation),
                    str(run.failed),
                ]
            )
    columns = ["region", "allocator", "footprint", "fragmentation", "failed allocations"]
    return _table(columns, rows) + (
        "<p>Activations only (weights are static in every design); the runtime is eager (views "
        "share their input's block, every other output gets its own: in-place writes are the "
        "planner's); fragmentation = footprint / max-live of the requests - 1; failed "
        "allocations under the tier's capacity.</p>"
    )


def _consumers(view: PlanView, region: Region) -> str:
    tables = []
    for by in ("tensor", "operator", "op type"):
        rows = [
            [escape(s.name), human_bytes(s.bytes), percent(s.share)]
            for s in view.top_consumers(region.key, by)
        ]
        tables.append(f"<div>{_table([by, 'bytes', 'share'], rows)}</div>")
    return (
        f"<p>Live at the peak step {region.peak_step} (shares of the {human_bytes(region.bound)} "
        "live there):</p>" + f'<div class="row">{"".join(tables)}</div>'
    )


def _legend(colours: dict[str, str]) -> str:
    items = [f'<span><i style="background:{c}"></i>{escape(n)}</span>' for n, c in colours.items()]
    return f'<div class="legend">{"".join(items)}<span><i style="background:{OTHER_COLOUR}"></i>other</span></div>'


def _tiling(view: PlanView) -> str:
    tiled = view.tiled_ops()
    if not tiled:
        return "<p>No operator is tiled in this plan.</p>"
    rows = [
        [
            escape(t.node),
            escape(t.op_type),
            str(t.device),
            str(t.count),
            escape(" ".join(f"{k}={v}" for k, v in t.axes.items())),
            human_bytes(t.l1_bytes),
            human_bytes(t.traffic_bytes),
            f"{t.ratio:.2f}",
        ]
        for t in tiled
    ]
    header = ["operator", "op type", "device", "tiles", "tile axes", "L1 bytes", "traffic"]
    return _table([*header, "traffic / compulsory"], rows) + (
        "<p>compulsory: every input and output moved once, a lower bound on any tiling's traffic.</p>"
    )


def _tiers(view: PlanView) -> str:
    upper = view.upper_tier_buffers()
    memory = escape(view.tier_order[-1]) if view.tier_order else "the memory tier"
    if not upper:
        return f"<p>Every buffer is in {memory}.</p>"
    rows = [
        [
            escape(b.tensor),
            escape(b.tier),
            str(b.device),
            escape(b.kind),
            human_bytes(b.bytes),
            f"[{b.start}, {b.end}]",
            str(len(view.readers.get(b.tensor, []))),
        ]
        for b in upper[:50]
    ]
    header = ["tensor", "tier", "device", "kind", "bytes", "steps", "readers"]
    note = f"<p>{len(upper)} buffers above {memory}, biggest first (first 50).</p>"
    return note + _table(header, rows)


def _devices(view: PlanView) -> str:
    tiers = view.tier_order or sorted({b.tier for b in view.buffers})
    rows = [
        [str(d.device), str(d.ops), str(d.inserted_ops), str(d.buffers)]
        + [human_bytes(d.bytes_by_tier.get(t, 0)) for t in tiers]
        + [f"{d.seconds * 1e3:.3f}" if d.seconds is not None else "-"]
        for d in view.devices()
    ]
    header = ["device", "operators", "inserted", "buffers", *map(escape, tiers), "latency (ms)"]
    return _table(header, rows)


def _latency(view: PlanView) -> str:
    rows = [
        [escape(name), str(count), f"{seconds * 1e6:.1f}", percent(share)]
        for name, count, seconds, share in view.latency_by_op_type()
    ]
    if not rows:
        return "<p>No per-operator costs (give the model to get them).</p>"
    return _table(["op type", "operators", "time (µs)", "share"], rows)


def render_html(view: PlanView, title: str) -> str:
    """The whole report as one HTML document."""
    colours = label_colours(view)
    latency, traffic = view.latency_s, view.traffic_by_tier()
    target = view.plan.get("target", {})
    sections = [
        f"<h1>tierplan report: {escape(title)}</h1>",
        f"<p>target {escape(str(target.get('name', '?')))}, {view.steps} steps, "
        f"{len(view.buffers)} buffers"
        + (f", estimated latency {latency * 1e3:.3f} ms" if latency is not None else "")
        + (f"; traffic {escape(traffic_text(traffic))}" if traffic is not None else "")
        + "</p>",
        "<h2>Summary per device and tier</h2>",
        _summary(view),
        "<h3>Runtime allocators replaying the same schedule</h3>",
        _allocators(view),
    ]
    for region in view.regions:
        svg, caption = timeline_svg(view, region, colours)
        sections += [
            f"<h2>{escape(region.key)}: memory timeline</h2>",
            f"<p>{escape(caption)}; colour by producer op type; hover a buffer for details.</p>",
            _legend(colours),
            svg,
            f"<h3>{escape(region.key)}: live bytes per step</h3>",
            live_curve_svg(view, region),
            f"<h3>{escape(region.key)}: top memory consumers</h3>",
            _consumers(view, region),
        ]
    sections += [
        "<h2>Tiling</h2>",
        _tiling(view),
        "<h2>Tiers</h2>",
        _tiers(view),
        "<h2>Devices</h2>",
        _devices(view),
        "<h2>Latency by op type</h2>",
        _latency(view),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>tierplan: {escape(title)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(sections)
        + f'<div id="info"></div><script>{SCRIPT}</script></body></html>\n'
    )
