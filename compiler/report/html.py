"""The HTML report: one self-contained file (inline SVG, CSS and JavaScript).

It opens from disk with no network access: no external scripts, styles or fonts.
Every name that comes from the model (tensor, operator, op type, model path) goes
through :func:`html.escape` in markup, and into the embedded plan data as JSON with
``<``, ``>`` and ``&`` escaped, so no model text can end the data block; the script
(``script``) only writes model text with ``textContent``. Sizes stay small: one
``<rect>`` per drawn buffer, one polyline per region, and the plan's tensors,
buffers and operators once as JSON (the 736-operator RandWire-WS report is 1.4 MiB;
``benchmarks/report.py``).

Charts draw their buffers in an inner ``<svg class="plot">`` whose x axis is in
steps, so that the script zooms and pans all of them by changing its ``viewBox``.
Regions come most important first (:meth:`PlanView.regions_by_importance`).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from tierplan.compiler.allocators import ALLOCATORS, simulate
from tierplan.compiler.allocators import requests as allocator_requests
from tierplan.compiler.evaluation import ACTIVATION_KINDS
from tierplan.compiler.plan import PlanBuffer, memory_summary
from tierplan.compiler.report.colours import BOUND, CAPACITY, LIVE, PEAK, label_colours
from tierplan.compiler.report.data import DeviceRow, PlanView, Region
from tierplan.compiler.report.frontier import frontier_section
from tierplan.compiler.report.script import SCRIPT
from tierplan.compiler.report.units import (
    REGION_COLUMNS,
    byte_ticks,
    human_bytes,
    percent,
    region_cells,
    round_step,
    tick_label,
    traffic_text,
)

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 1000, 320, 80, 20, 20, 30

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px 380px 24px 24px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}
td:first-child,th:first-child{text-align:left}
svg.timeline,svg.curve{background:#fafafa;border:1px solid #ddd}
svg text{font-size:11px;fill:#444}
svg.plot{cursor:crosshair}
rect[data-b]{stroke:#fff;stroke-width:0.3;vector-effect:non-scaling-stroke}
body.focus rect[data-b]{opacity:.18}
body.focus rect[data-b].sel{opacity:1;stroke:#000;stroke-width:1.5}
.mprod{fill:#2ca02c;opacity:.35}.mread{fill:#9467bd;opacity:.3}.mcur{fill:#d62728;opacity:.3}
tr.prod td{background:#dff0d8}tr.read td{background:#ece3f5}tr.cur td{background:#fde2e2}
tr[data-step]{cursor:pointer}
.legend span{display:inline-block;margin-right:12px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
#info{position:fixed;left:12px;bottom:12px;background:#fff;border:1px solid #999;
padding:6px 10px;white-space:pre;font-size:12px;display:none}
#side{position:fixed;top:0;right:0;width:350px;height:100vh;overflow:auto;
background:#fff;border-left:1px solid #ccc;padding:10px;box-sizing:border-box;font-size:13px}
#side input{width:100%;box-sizing:border-box;margin:4px 0}
#details{display:none}#details ul{padding-left:18px;margin:4px 0}
#details table{margin:4px 0}.src{color:#666;font-size:12px}
.row{display:flex;gap:24px;flex-wrap:wrap}
"""


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A table; cells must already be escaped."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _y_axis(low: float, high: float) -> str:
    """Round byte ticks along y, with grid lines."""
    ticks, name, unit = byte_ticks(low, high)
    parts = []
    for value in ticks:
        y = TOP + HEIGHT - (value - low) / max(high - low, 1) * HEIGHT
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick_label(value, name, unit)}</text>'
            f'<line x1="{LEFT}" x2="{LEFT + WIDTH}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>'
        )
    return "".join(parts)


def _x_axis(steps: int) -> str:
    """Step ticks along x (the script redraws them when zooming)."""
    step = max(int(round_step(max(steps, 1), 8)), 1)
    labels = "".join(
        f'<text x="{LEFT + value / max(steps, 1) * WIDTH:.1f}" y="{TOP + HEIGHT + 16}" '
        f'text-anchor="middle">{value}</text>'
        for value in range(0, steps + 1, step)
    )
    return f'<g class="xaxis" data-y="{TOP + HEIGHT + 16}">{labels}</g>'


def _plot(view: PlanView, content: str) -> str:
    """The zoomable inner chart: x in steps, y in pixels, and a layer for the script's marks."""
    return (
        f'<svg class="plot" x="{LEFT}" y="{TOP}" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {max(view.steps, 1)} {HEIGHT}" preserveAspectRatio="none" '
        f'data-h="{HEIGHT}"><rect x="0" y="0" width="{max(view.steps, 1)}" height="{HEIGHT}" '
        f'fill="transparent"/>{content}<g class="marks" data-h="{HEIGHT}"></g></svg>'
    )


def _peak_line(region: Region) -> str:
    x = region.peak_step + 0.5
    return (
        f'<line x1="{x}" x2="{x}" y1="0" y2="{HEIGHT}" stroke="#d00" stroke-dasharray="4 3" '
        'vector-effect="non-scaling-stroke"/>'
    )


def _tooltip(view: PlanView, buffer: PlanBuffer) -> str:
    source = view.sources.get(view.producer(buffer) or "")
    alias = f"\nalias of {buffer.alias_of}" if buffer.alias_of else ""
    return escape(
        f"{buffer.tensor}\n{human_bytes(buffer.nbytes)} ({buffer.nbytes} B) at {buffer.offset:#x}"
        f"\nsteps [{buffer.start}, {buffer.end}]\nproducer: {view.origin(buffer)}"
        + (f"\nsource: {source}" if source else "")
        + alias
    )


def _drawn(view: PlanView, region: Region) -> list[tuple[int, PlanBuffer]]:
    """``(index in view.buffers, buffer)`` drawn in a region's timeline: all but weights
    (summarised in the caption), unless the region holds nothing else."""
    members = [(i, b) for i, b in enumerate(view.buffers) if b.region_key == region.key]
    return [(i, b) for i, b in members if b.kind != "weight"] or members


def timeline_svg(view: PlanView, region: Region, colours: dict[str, str]) -> tuple[str, str]:
    """The memory timeline of one region, and a caption (weights are summarised, not drawn)."""
    drawn = _drawn(view, region)
    low = min(b.offset for _, b in drawn)
    high = max(b.offset + b.nbytes for _, b in drawn)
    sy = HEIGHT / max(high - low, 1)
    rects = []
    for i, b in sorted(drawn, key=lambda item: (item[1].offset, item[1].start, item[1].tensor)):
        y = HEIGHT - (b.offset + b.nbytes - low) * sy
        rects.append(
            f'<rect data-b="{i}" x="{b.start}" y="{y:.1f}" width="{b.end - b.start + 1}" '
            f'height="{max(b.nbytes * sy, 0.5):.1f}" fill="{colours[view.made_by(b)]}">'
            f"<title>{_tooltip(view, b)}</title></rect>"
        )
    svg = (
        f'<svg class="timeline" id="timeline-{escape(region.key)}" width="{LEFT + WIDTH + RIGHT}" '
        f'height="{TOP + HEIGHT + BOTTOM}">{_y_axis(low, high)}{_x_axis(view.steps)}'
        f"{_plot(view, ''.join(rects) + _peak_line(region))}</svg>"
    )
    weights = sum(1 for b in view.region_buffers(region.key) if b.kind == "weight")
    caption = f"x: step, y: address; {len(drawn)} buffers drawn; red dashed line: peak step {region.peak_step}"
    if weights and any(b.kind != "weight" for _, b in drawn):
        caption += (
            f"; {weights} weights ({human_bytes(region.weight_bytes)}) below {low:#x} not drawn"
        )
    return svg, caption


def live_curve_svg(view: PlanView, region: Region) -> str:
    """Bytes live per step, with the lower bound and (when on scale) the capacity."""
    curve = view.live_curve(region.key)
    top = max(region.peak, region.bound, 1)
    on_scale = region.capacity and region.capacity <= 2 * top
    if on_scale:
        top = max(top, region.capacity)
    sy = HEIGHT / top
    points = " ".join(
        f"{step},{HEIGHT - value * sy:.1f} {step + 1},{HEIGHT - value * sy:.1f}"
        for step, value in enumerate(curve.tolist())
    )
    inner = [
        f'<polyline fill="none" stroke="{LIVE}" stroke-width="1.5" '
        f'vector-effect="non-scaling-stroke" points="{points}"/>',
        _peak_line(region),
    ]
    labels = []
    # Label positions differ so that equal values (peak == bound) stay readable.
    for value, colour, name, x in (
        (region.bound, BOUND, "lower bound", LEFT + WIDTH - 4),
        (region.peak, PEAK, "peak (placed)", LEFT + WIDTH * 0.6),
        *([(region.capacity, CAPACITY, "capacity", LEFT + WIDTH * 0.3)] if on_scale else []),
    ):
        y = HEIGHT - value * sy
        inner.append(
            f'<line x1="0" x2="{max(view.steps, 1)}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" '
            'stroke-dasharray="6 3" vector-effect="non-scaling-stroke"/>'
        )
        labels.append(
            f'<text x="{x:.1f}" y="{TOP + y - 3:.1f}" text-anchor="end" fill="{colour}">'
            f"{name} {human_bytes(value)}</text>"
        )
    return (
        f'<svg class="curve" width="{LEFT + WIDTH + RIGHT}" height="{TOP + HEIGHT + BOTTOM}">'
        f"{_y_axis(0, top)}{_x_axis(view.steps)}{_plot(view, ''.join(inner))}{''.join(labels)}</svg>"
    )


def _summary(view: PlanView) -> str:
    rows = [[escape(cell) for cell in region_cells(r)] for r in view.regions_by_importance()]
    return _table(list(REGION_COLUMNS), rows)


def _allocators(view: PlanView) -> str:
    """Pool and buddy allocators on each region's activations, beside the static plan."""
    rows = []
    peaks, bounds = memory_summary(view.buffers, set(ACTIVATION_KINDS))
    regions = allocator_requests(view.plan, ACTIVATION_KINDS)
    order = [r.key for r in view.regions_by_importance() if r.key in regions]
    for region, requests in ((key, regions[key]) for key in order):
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
                    "-" if run.fragmentation is None else percent(run.fragmentation),
                    str(run.failed),
                ]
            )
    columns = ["region", "allocator", "footprint", "fragmentation", "failed allocations"]
    return _table(columns, rows) + (
        "<p>Activations only (weights are static in every design); the runtime is eager (views "
        "share their input's block, every other output gets its own: in-place writes are the "
        "planner's); fragmentation = footprint / max-live of the requests - 1, not defined ('-') "
        "once an allocation failed (the footprint then leaves out what did not fit); failed "
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
    return f'<div class="legend">{"".join(items)}</div>'


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
            human_bytes(b.nbytes),
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

    def used(row: DeviceRow, tier: str) -> str:
        if tier not in row.peak_by_tier:
            return "-"
        return f"{human_bytes(row.peak_by_tier[tier])} / {human_bytes(row.capacity_by_tier[tier])}"

    rows = [
        [str(d.device), str(d.ops), str(d.inserted_ops), str(d.buffers)]
        + [used(d, t) for t in tiers]
        + [f"{d.seconds * 1e3:.3f}" if d.seconds is not None else "-"]
        for d in view.devices()
    ]
    header = ["device", "operators", "inserted", "buffers"]
    header += [f"{escape(t)} peak / capacity" for t in tiers] + ["latency (ms)"]
    return _table(header, rows)


def _operators(view: PlanView) -> str:
    """Every operator in schedule order; a row selects it (and marks its step on the charts)."""
    costs = {c.name: c for c in view.costs or []}
    rows = []
    for step, op in enumerate(view.ops):
        cost = costs.get(op["node"])
        tiles = op.get("tiles") or {}
        cells = [
            str(step),
            escape(op["node"]),
            escape(op["op_type"]),
            escape(view.sources.get(op["node"], "")),
            str(op.get("device", 0)),
            str(tiles.get("count", "")),
            human_bytes(sum(view.tensor_bytes(n) for n in op.get("outputs", []) if n)),
            f"{cost.seconds * 1e6:.2f}" if cost else "-",
        ]
        row = "".join(f"<td>{c}</td>" for c in cells)
        rows.append(f'<tr id="op-{step}" data-step="{step}">{row}</tr>')
    header = ["step", "operator", "op type", "source", "device", "tiles", "output bytes", "µs"]
    head = "".join(f"<th>{h}</th>" for h in header)
    return f'<table class="ops"><tr>{head}</tr>{"".join(rows)}</table>'


def _script_data(text: str) -> str:
    """JSON safe inside a ``<script>`` block: no model text can close it."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def plan_data(view: PlanView, regions: list[Region]) -> dict[str, Any]:
    """What the script needs: tensors (name, producer step, reader steps, kind), buffers
    (tensor, region, offset, bytes, start, end, alias of), operators (name, op type,
    device, source, input and output tensors, µs) and regions (key, lowest drawn
    address, peak)."""
    step_of = {op["node"]: step for step, op in enumerate(view.ops)}
    names = list(dict.fromkeys(b.tensor for b in view.buffers))
    index = {name: i for i, name in enumerate(names)}
    kinds = {b.tensor: b.kind for b in reversed(view.buffers)}
    producers = {b.tensor: view.producer(b) for b in view.buffers}
    region_index = {r.key: i for i, r in enumerate(regions)}
    costs = {c.name: c.seconds * 1e6 for c in view.costs or []}

    def tensors(names: list[str]) -> list[int]:
        return [index[n] for n in dict.fromkeys(names) if n in index]

    return {
        "steps": view.steps,
        "layout": {"left": LEFT, "width": WIDTH},
        "regions": [
            {"key": r.key, "low": min(b.offset for _, b in _drawn(view, r)), "peak": r.peak}
            for r in regions
        ],
        "tensors": [
            [
                name,
                step_of.get(producers[name] or "", -1),
                sorted({step_of[op] for op in view.readers.get(name, []) if op in step_of}),
                kinds[name],
            ]
            for name in names
        ],
        "buffers": [
            [
                index[b.tensor],
                region_index[b.region_key],
                b.offset,
                b.nbytes,
                b.start,
                b.end,
                b.alias_of,
            ]
            for b in view.buffers
        ],
        "ops": [
            [
                op["node"],
                op["op_type"],
                op.get("device", 0),
                view.sources.get(op["node"]),
                tensors([*op.get("inputs", []), *op.get("implicit_inputs", [])]),
                tensors(op.get("outputs", [])),
                costs.get(op["node"]),
            ]
            for op in view.ops
        ],
    }


SIDE = """<div id="side"><b>Find</b> a tensor, an operator (or its source module) or a step:
<input id="search" list="names" placeholder="name, part of a name, or a step">
<div><button id="zoom-in">zoom in</button> <button id="zoom-out">zoom out</button>
<button id="zoom-reset">reset</button> <span id="window"></span></div>
<p class="src">Wheel: zoom, drag: pan, double click: reset; click a buffer: its life,
producer and readers; click an empty spot: free space at that step.</p>
<div id="details"></div></div>"""


def _latency(view: PlanView) -> str:
    rows = [
        [escape(name), str(count), f"{seconds * 1e6:.1f}", percent(share)]
        for name, count, seconds, share in view.latency_by_op_type()
    ]
    if not rows:
        return "<p>No per-operator costs (give the model to get them).</p>"
    return _table(["op type", "operators", "time (µs)", "share"], rows)


def _names(view: PlanView) -> str:
    """The search box's suggestions: every tensor and operator name."""
    names = dict.fromkeys([*(b.tensor for b in view.buffers), *view.op_by_name])
    options = "".join(f'<option value="{escape(n)}">' for n in names)
    return f'<datalist id="names">{options}</datalist>'


def render_html(view: PlanView, title: str, preface: str = "") -> str:
    """The whole report as one HTML document; ``preface`` (markup) goes above the summary
    (the comparison with another plan)."""
    colours = label_colours(view)
    regions = view.regions_by_importance()
    latency, traffic = view.latency_s, view.traffic_by_tier()
    target = view.plan.get("target", {})
    sections = [
        f"<h1>tierplan report: {escape(title)}</h1>",
        f"<p>target {escape(str(target.get('name', '?')))}, {view.steps} steps, "
        f"{len(view.buffers)} buffers"
        + (f", estimated latency {latency * 1e3:.3f} ms" if latency is not None else "")
        + (f"; traffic {escape(traffic_text(traffic))}" if traffic is not None else "")
        + "</p>",
        preface,
        frontier_section(view.plan),
        "<h2>Summary per device and tier</h2>",
        "<p>Regions nearest their capacity first; regions of tiles (scratch only) last.</p>",
        _summary(view),
        "<h3>Runtime allocators replaying the same schedule</h3>",
        _allocators(view),
    ]
    for region in regions:
        svg, caption = timeline_svg(view, region, colours)
        what = " (tile buffers: tiling sizes them to fill the tier)" if region.scratch_only else ""
        sections += [
            f"<h2>{escape(region.key)}: memory timeline{what}</h2>",
            f"<p>{escape(caption)}; colour by producer op type; hover a buffer for details, "
            "click it to follow it.</p>",
            _legend(colours),
            svg,
            f"<h3>{escape(region.key)}: live bytes per step</h3>",
            live_curve_svg(view, region),
            f"<h3>{escape(region.key)}: top memory consumers</h3>",
            _consumers(view, region),
        ]
    sections += [
        "<h2>Operators</h2>",
        "<p>Schedule order; click a row to see its tensors on the charts.</p>",
        _operators(view),
        "<h2>Tiling</h2>",
        _tiling(view),
        "<h2>Tiers</h2>",
        _tiers(view),
        "<h2>Devices</h2>",
        _devices(view),
        "<h2>Latency by op type</h2>",
        _latency(view),
    ]
    data = _script_data(json.dumps(plan_data(view, regions), separators=(",", ":")))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>tierplan: {escape(title)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(sections)
        + SIDE
        + _names(view)
        + '<div id="info"></div>'
        + f'<script type="application/json" id="plan-data">{data}</script>'
        + f"<script>{SCRIPT}</script></body></html>\n"
    )
