"""``tierplan inspect``: the plan as rich tables in the terminal.

:func:`summary_tables` is the overview (per device and tier, top consumers at each
peak, latency by op type when costs are known); :func:`tensor_table` is one tensor's
life, :func:`step_table` what is live at a step (activations, then weights, biggest
first), :func:`op_table` one operator's tensors, tiles, traffic (per tensor and tier,
from the costs) and source module. An unknown name is an :class:`InputError` that
suggests close matches.
"""

from __future__ import annotations

from difflib import get_close_matches

from rich.table import Table
from tierplan.compiler.errors import InputError
from tierplan.compiler.report.data import PlanView
from tierplan.compiler.report.units import (
    REGION_COLUMNS,
    human_bytes,
    percent,
    region_cells,
    traffic_text,
)


def _unknown(what: str, name: str, known: list[str]) -> InputError:
    close = get_close_matches(name, known, n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return InputError(f"the plan has no {what} {name!r}{hint}")


def summary_tables(view: PlanView, title: str) -> list[Table]:
    """Overview tables: regions (most used first, tiles last), then top consumers per region."""
    regions = Table(title=f"tierplan plan: {title}")
    for column in REGION_COLUMNS:
        regions.add_column(column, justify="left" if column == "device/tier" else "right")
    for r in view.regions_by_importance():
        regions.add_row(*region_cells(r))
    latency, traffic = view.latency_s, view.traffic_by_tier()
    regions.caption = (
        f"{view.steps} steps, {len(view.buffers)} buffers"
        + (f", estimated latency {latency * 1e3:.3f} ms" if latency is not None else "")
        + (f"; traffic {traffic_text(traffic)}" if traffic is not None else "")
    )
    tables = [regions]
    for r in view.regions_by_importance():
        top = Table(title=f"{r.key}: live at peak step {r.peak_step}, by producer op type")
        for column in ("op type", "bytes", "share"):
            top.add_column(column, justify="left" if column == "op type" else "right")
        for share in view.top_consumers(r.key, "op type"):
            top.add_row(share.name, human_bytes(share.bytes), percent(share.share))
        tables.append(top)
    return tables


def tensor_table(view: PlanView, name: str) -> Table:
    """One tensor's life: producer, readers, steps, tier, offset, aliases (one row per copy)."""
    buffers = view.tensor_buffers(name)
    if not buffers:
        raise _unknown("buffer for tensor", name, sorted({b.tensor for b in view.buffers}))
    first = buffers[0]
    made = view.origin(first)
    if view.producer(first) in view.sources:
        made += f" from {view.sources[view.producer(first) or '']}"
    readers = view.readers.get(name, [])
    table = Table(title=f"tensor {name}")
    for column in ("device", "tier", "offset", "bytes", "steps", "alias of"):
        table.add_column(column, justify="right")
    for b in buffers:
        table.add_row(
            str(b.device),
            b.tier,
            f"{b.offset:#x}",
            f"{human_bytes(b.nbytes)} ({b.nbytes})",
            f"[{b.start}, {b.end}]",
            b.alias_of or "-",
        )
    steps = {op: view.op_by_name[op]["step"] for op in readers}
    table.caption = (
        f"kind {first.kind}; producer {made}; readers: "
        + (", ".join(f"{op} @{steps[op]}" for op in readers) or "none")
        + f"; sharing its bytes: {', '.join(view.aliases_of(name)) or 'none'}"
    )
    return table


def step_table(view: PlanView, step: int) -> Table:
    """What is live at ``step``, activations then weights, each biggest first, with the
    operator that runs there."""
    if not 0 <= step < view.steps:
        raise InputError(f"step {step} is outside the schedule (0 to {view.steps - 1})")
    op = view.ops[step]
    # Activations first: they are what the step is about; weights sit there all along.
    live = sorted(view.live_at(step), key=lambda b: b.kind == "weight")
    table = Table(
        title=f"step {step}: {op['node']} ({op['op_type']}) on device {op.get('device', 0)}"
    )
    for column in ("tensor", "kind", "device/tier", "offset", "bytes", "steps", "producer"):
        table.add_column(column, justify="left" if column in ("tensor", "producer") else "right")
    for b in live:
        table.add_row(
            b.tensor,
            b.kind,
            b.region_key,
            f"{b.offset:#x}",
            human_bytes(b.nbytes),
            f"[{b.start}, {b.end}]",
            view.producer(b) or view.made_by(b),
        )
    table.caption = f"{len(live)} buffers, {human_bytes(sum(b.nbytes for b in live))} live (aliases counted apart); weights last"
    return table


def op_table(view: PlanView, name: str) -> Table:
    """One operator: its tensors with their placement, its tiles and its traffic."""
    op = view.op_by_name.get(name)
    if op is None:
        raise _unknown("operator", name, list(view.op_by_name))
    table = Table(
        title=f"operator {name} ({op['op_type']}), step {op['step']}, device {op.get('device', 0)}"
    )
    cost = view.op_cost(name)
    for column in ("slot", "tensor", "device/tier", "offset", "bytes", "steps", "moved"):
        table.add_column(column, justify="left" if column in ("slot", "tensor") else "right")
    for role, names in (("in", op.get("inputs", [])), ("out", op.get("outputs", []))):
        for index, tensor in enumerate(names):
            buffers = view.tensor_buffers(tensor) if tensor else []
            moved = cost.bytes_by_tensor.get(tensor, {}) if cost is not None else {}
            moved_text = traffic_text(moved) if moved else "-"
            if not buffers:
                table.add_row(f"{role} {index}", tensor or "(omitted)", "-", "-", "-", "-", "-")
            for b in buffers:
                table.add_row(
                    f"{role} {index}",
                    tensor,
                    b.region_key,
                    f"{b.offset:#x}",
                    human_bytes(b.nbytes),
                    f"[{b.start}, {b.end}]",
                    moved_text,
                )
    tiled = next((t for t in view.tiled_ops() if t.node == name), None)
    notes = []
    if tiled is None:
        notes.append("not tiled")
    else:
        axes = " ".join(f"{k}={v}" for k, v in tiled.axes.items())
        notes.append(
            f"{tiled.count} tiles ({axes}), L1 {human_bytes(tiled.l1_bytes)}, traffic "
            f"{human_bytes(tiled.traffic_bytes)} = {tiled.ratio:.2f} x compulsory "
            f"{human_bytes(tiled.compulsory_bytes)}"
        )
    if name in view.sources:
        notes.append(f"source {view.sources[name]}")
    if cost is not None:
        notes.append(
            f"{cost.flops} FLOPs; traffic {traffic_text(cost.bytes_by_tier)}; "
            f"{cost.seconds * 1e6:.2f} µs"
        )
    table.caption = "; ".join(notes)
    return table
