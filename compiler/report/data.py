"""What every view of a plan shows, computed once from the plan (and, optionally, costs).

:class:`PlanView` reads a ``tierplan-plan/1`` document (plan-format.md) and answers
the questions the HTML report, the PNG plot and ``tierplan inspect`` all ask: the
summary per device and tier, the rectangles of the memory timeline, the live-bytes
curve, what is live at a step, the top memory consumers, tiling, tiers, devices and
the latency breakdown. It is generic over devices and tiers: a region is any
``"<device>/<tier>"`` that holds a buffer, in the target's tier order.

Nothing here formats text; names from the model are kept as given (views escape them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from tierplan.compiler.cost import OpCost, cost_of_entry
from tierplan.compiler.errors import InputError
from tierplan.compiler.intervals import live_bytes_per_step
from tierplan.compiler.plan import Plan, PlanBuffer, alias_groups, region_key, region_live_ranges

# Labels for buffers that no operator produces (their "producer" column).
NO_PRODUCER = {"weight": "(weight)", "input": "(graph input)", "output": "(graph input)"}


@dataclass(frozen=True, slots=True)
class Region:
    """One device's tier: its capacity and how the plan uses it."""

    key: str
    device: int
    tier: str
    capacity: int
    peak: int
    bound: int
    buffers: int
    peak_step: int
    weight_bytes: int
    scratch_only: bool

    @property
    def use(self) -> float:
        """peak / capacity (0 when the capacity is unknown)."""
        return self.peak / self.capacity if self.capacity else 0.0

    @property
    def fragmentation(self) -> float:
        """peak / lower bound - 1 (0 is a perfect packing for this schedule)."""
        return self.peak / self.bound - 1 if self.bound else 0.0

    @property
    def efficiency(self) -> float:
        """lower bound / peak (1 is a perfect packing)."""
        return self.bound / self.peak if self.peak else 1.0


@dataclass(frozen=True, slots=True)
class Share:
    """One row of a top-consumers list: bytes and their share of the whole."""

    name: str
    bytes: int
    share: float


@dataclass(frozen=True, slots=True)
class TiledOp:
    """One tiled operator: its tiles, and its traffic against the compulsory traffic.

    ``compulsory_bytes`` (every input and output moved once) is a lower bound on any
    tiling's traffic; ``ratio`` is traffic over it.
    """

    node: str
    op_type: str
    device: int
    count: int
    axes: dict[str, int]
    l1_bytes: int
    traffic_bytes: int
    compulsory_bytes: int

    @property
    def ratio(self) -> float:
        """Traffic / compulsory traffic (1 is the least any tiling can move)."""
        return self.traffic_bytes / self.compulsory_bytes if self.compulsory_bytes else 0.0


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """One device of the partition: what runs and lives there."""

    device: int
    ops: int
    inserted_ops: int
    buffers: int
    peak_by_tier: dict[str, int]
    capacity_by_tier: dict[str, int]
    seconds: float | None


def carried_costs(ops: Sequence[dict[str, Any]]) -> list[OpCost] | None:
    """The costs the plan's operators carry (``ops[*].cost``), ``None`` unless all do."""
    try:
        costs = [cost_of_entry(op) for op in ops]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InputError(f"the plan's operator costs are malformed: {error!r}") from None
    known = [cost for cost in costs if cost is not None]
    return known if ops and len(known) == len(costs) else None


class PlanView:
    """Read-only views of one plan; per-operator costs add the latency views, and
    ``sources`` (operator -> the model module it came from) the operators' origins.

    The costs are ``costs`` when given, else those the plan carries (``ops[*].cost``).
    """

    def __init__(
        self,
        plan: Plan,
        costs: Sequence[OpCost] | None = None,
        sources: dict[str, str] | None = None,
    ) -> None:
        require_viewable(plan)
        self.plan = plan
        self.sources = dict(sources or {})
        self.ops: list[dict[str, Any]] = list(plan.get("ops", []))
        self.costs = list(costs) if costs is not None else carried_costs(self.ops)
        self.steps = len(plan.get("schedule", self.ops))
        self.op_by_name = {op["node"]: op for op in self.ops}
        self.producers: dict[str, dict[str, Any]] = {}
        self.readers: dict[str, list[str]] = defaultdict(list)
        for op in self.ops:
            for name in op.get("outputs", []):
                self.producers.setdefault(name, op)
            for name in dict.fromkeys([*op.get("inputs", []), *op.get("implicit_inputs", [])]):
                if name:
                    self.readers[name].append(op["node"])
        # A scratch buffer (tile, temporary) belongs to the operator at its step.
        for buffer in plan.get("buffers", []):
            if buffer["kind"] == "scratch" and 0 <= buffer["start"] < len(self.ops):
                self.producers.setdefault(buffer["tensor"], self.ops[buffer["start"]])
        self.buffers = PlanBuffer.of_plan(plan)
        self._roots = alias_groups(self.buffers)
        self.tier_order = [t["name"] for t in plan.get("target", {}).get("tiers", [])]
        self.regions = self._regions()

    # -- regions ------------------------------------------------------------------

    def _regions(self) -> list[Region]:
        capacities = {
            t["name"]: t["capacity"] for t in self.plan.get("target", {}).get("tiers", [])
        }
        order = {name: i for i, name in enumerate(self.tier_order)}
        keys = sorted(
            {(b.device, b.tier) for b in self.buffers},
            key=lambda key: (key[0], order.get(key[1], len(order)), key[1]),
        )
        regions = []
        for device, tier in keys:
            key = region_key(device, tier)
            members = self.region_buffers(key)
            curve = self.live_curve(key)
            regions.append(
                Region(
                    key=key,
                    device=device,
                    tier=tier,
                    capacity=int(capacities.get(tier, 0)),
                    peak=max(b.offset + b.nbytes for b in members),
                    bound=int(curve.max()) if len(curve) else 0,
                    buffers=len(members),
                    peak_step=int(curve.argmax()) if len(curve) else 0,
                    weight_bytes=sum(b.nbytes for b in members if b.kind == "weight"),
                    scratch_only=all(b.kind == "scratch" for b in members),
                )
            )
        return regions

    def regions_by_importance(self) -> list[Region]:
        """Regions as a reader should meet them: those nearest their capacity first, and
        scratch-only ones (tiles, which tiling sizes to fill their tier) last."""
        return sorted(self.regions, key=lambda r: (r.scratch_only, -r.use, r.key))

    def region(self, key: str) -> Region:
        """The region called ``key`` (``"0/DDR"``)."""
        return next(r for r in self.regions if r.key == key)

    def region_buffers(self, key: str) -> list[PlanBuffer]:
        """Buffers of one region, in plan order."""
        return [b for b in self.buffers if b.region_key == key]

    def producer(self, buffer: PlanBuffer) -> str | None:
        """The operator that writes ``buffer`` (a scratch buffer's: the one at its step)."""
        op = self.producers.get(buffer.tensor)
        return op["node"] if op else None

    def made_by(self, buffer: PlanBuffer) -> str:
        """What made ``buffer``: the producer's op type, else its kind (``(weight)`` ...);
        buffers are coloured and grouped by it."""
        op = self.producers.get(buffer.tensor)
        return op["op_type"] if op else NO_PRODUCER.get(buffer.kind, f"({buffer.kind})")

    def origin(self, buffer: PlanBuffer) -> str:
        """Its producer as views name it: ``node (OpType)``, else :meth:`made_by`."""
        name = self.producer(buffer)
        return f"{name} ({self.made_by(buffer)})" if name else self.made_by(buffer)

    def op_type_order(self, buffers: Iterable[PlanBuffer]) -> list[str]:
        """:meth:`made_by` labels of ``buffers`` by total bytes, biggest first (colour and
        legend order)."""
        totals: dict[str, int] = defaultdict(int)
        for buffer in buffers:
            totals[self.made_by(buffer)] += buffer.nbytes
        return [name for name, _ in sorted(totals.items(), key=lambda item: (-item[1], item[0]))]

    def _groups(self, key: str) -> dict[str, list[PlanBuffer]]:
        groups: dict[str, list[PlanBuffer]] = defaultdict(list)
        for buffer in self.region_buffers(key):
            groups[self._roots.get((key, buffer.tensor), buffer.tensor)].append(buffer)
        return groups

    def live_curve(self, key: str) -> np.ndarray:
        """Bytes live at each step in one region, each alias group counted once.

        Its maximum is the plan's ``lower_bound_bytes`` for the region.
        """
        return live_bytes_per_step(region_live_ranges(self.region_buffers(key)), self.steps)

    # -- what is live ----------------------------------------------------------------

    def live_at(self, step: int, key: str | None = None) -> list[PlanBuffer]:
        """Buffers live at ``step`` (in one region, or all), biggest first."""
        chosen = self.buffers if key is None else self.region_buffers(key)
        live = [b for b in chosen if b.live_at(step)]
        return sorted(live, key=lambda b: (-b.nbytes, b.tensor))

    def _peak_members(self, region: Region) -> list[PlanBuffer]:
        """One buffer per alias group live at the peak step: the biggest one live there."""
        members = []
        for group in self._groups(region.key).values():
            start = min(b.start for b in group)
            end = max(b.end for b in group)
            if start <= region.peak_step <= end:
                live = [b for b in group if b.live_at(region.peak_step)] or group
                biggest = max(b.nbytes for b in group)
                chosen = max(live, key=lambda b: (b.nbytes, b.tensor))
                members.append((chosen, biggest))
        return [
            replace(chosen, nbytes=biggest)
            for chosen, biggest in sorted(members, key=lambda m: (-m[1], m[0].tensor))
        ]

    def top_consumers(self, key: str, by: str, limit: int = 10) -> list[Share]:
        """What is live at the region's peak step, grouped ``by`` tensor, operator or op type.

        Shares are of the bytes live at that step (the lower bound).
        """
        region = self.region(key)
        totals: dict[str, int] = defaultdict(int)
        for buffer in self._peak_members(region):
            made_by = self.made_by(buffer)
            name = {
                "tensor": buffer.tensor,
                "operator": self.producer(buffer) or made_by,
                "op type": made_by,
            }[by]
            totals[name] += buffer.nbytes
        rows = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:limit]
        return [
            Share(name, size, size / region.bound if region.bound else 0.0) for name, size in rows
        ]

    # -- tensors and operators -------------------------------------------------------

    def tensor_buffers(self, name: str) -> list[PlanBuffer]:
        """Every buffer (copy) of one tensor."""
        return [b for b in self.buffers if b.tensor == name]

    def aliases_of(self, name: str) -> list[str]:
        """Tensors whose buffers reuse ``name``'s bytes, directly or through a chain."""
        roots = {
            region: self._roots[(region, tensor)]
            for region, tensor in self._roots
            if tensor == name
        }
        return sorted(
            {
                t
                for (region, t), root in self._roots.items()
                if roots.get(region) == root and t != name
            }
        )

    def tensor_bytes(self, name: str) -> int:
        """Size of a tensor that has a buffer (0 when it has none)."""
        return max((b.nbytes for b in self.tensor_buffers(name)), default=0)

    def tiled_ops(self) -> list[TiledOp]:
        """Every tiled operator, in schedule order."""
        rows = []
        for op in self.ops:
            tiles = op.get("tiles")
            if not tiles:
                continue
            touched = dict.fromkeys(n for n in [*op.get("inputs", []), *op.get("outputs", [])] if n)
            rows.append(
                TiledOp(
                    node=op["node"],
                    op_type=op["op_type"],
                    device=op.get("device", 0),
                    count=int(tiles.get("count", 0)),
                    axes=dict(tiles.get("axes", {})),
                    l1_bytes=int(tiles.get("l1_bytes", 0)),
                    traffic_bytes=int(tiles.get("traffic_bytes", 0)),
                    compulsory_bytes=sum(self.tensor_bytes(n) for n in touched),
                )
            )
        return rows

    def upper_tier_buffers(self) -> list[PlanBuffer]:
        """Buffers placed in a tier faster than the memory tier (the last one), biggest first."""
        memory = self.tier_order[-1] if self.tier_order else None
        chosen = [b for b in self.buffers if b.tier != memory]
        return sorted(chosen, key=lambda b: (-b.nbytes, b.tensor))

    def devices(self) -> list[DeviceRow]:
        """One row per device that runs an operator or holds a buffer."""
        seconds: dict[int, float] = defaultdict(float)
        for cost in self.costs or []:
            seconds[cost.device] += cost.seconds
        devices = sorted(
            {op.get("device", 0) for op in self.ops} | {b.device for b in self.buffers}
        )
        rows = []
        for device in devices:
            ops = [op for op in self.ops if op.get("device", 0) == device]
            buffers = [b for b in self.buffers if b.device == device]
            # The tier's peak, not the sum of its buffers: buffers that are never live
            # together (tiles above all) share their bytes.
            mine = [r for r in self.regions if r.device == device]
            rows.append(
                DeviceRow(
                    device=device,
                    ops=len(ops),
                    inserted_ops=sum(1 for op in ops if op.get("inserted")),
                    buffers=len(buffers),
                    peak_by_tier={r.tier: r.peak for r in mine},
                    capacity_by_tier={r.tier: r.capacity for r in mine},
                    seconds=seconds[device] if self.costs is not None else None,
                )
            )
        return rows

    # -- latency ---------------------------------------------------------------------

    @property
    def latency_s(self) -> float | None:
        """The plan's estimated latency (``summary.latency_s``), if it has one."""
        value = self.plan.get("summary", {}).get("latency_s")
        return float(value) if isinstance(value, int | float) else None

    def latency_by_op_type(self) -> list[tuple[str, int, float, float]]:
        """``(op type, operators, seconds, share)`` largest first; empty without costs."""
        seconds: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        for cost in self.costs or []:
            seconds[cost.op_type] += cost.seconds
            counts[cost.op_type] += 1
        total = sum(seconds.values())
        rows = sorted(seconds.items(), key=lambda item: (-item[1], item[0]))
        return [(name, counts[name], s, s / total if total else 0.0) for name, s in rows]

    def traffic_by_tier(self) -> dict[str, int] | None:
        """Bytes the operators move from or to each tier (``None`` without costs)."""
        if self.costs is None:
            return None
        totals: dict[str, int] = defaultdict(int)
        for cost in self.costs:
            for tier, count in cost.bytes_by_tier.items():
                totals[tier] += count
        return dict(sorted(totals.items()))

    def op_cost(self, name: str) -> OpCost | None:
        """The cost of one operator, when costs are known."""
        return next((c for c in self.costs or [] if c.name == name), None)


def require_viewable(plan: Plan) -> None:
    """Refuse a plan (typed by :func:`~tierplan.compiler.plan.read_plan`) whose parts the
    views cannot tie together: ``ops`` in schedule order, buffers within the schedule and
    in the target's tiers. Other broken rules (overlaps, sizes) are shown as they are;
    ``tierplan check`` names them all."""
    steps = len(plan["schedule"])
    hint = "(tierplan check lists every problem)"
    ops = plan["ops"]
    for step, op in enumerate(ops[: steps + 1]):
        if step >= steps or op["node"] != plan["schedule"][step] or op["step"] != step:
            raise InputError(
                f"the plan's ops[{step}] is not its step {step} in schedule order {hint}"
            )
    if len(ops) < steps:
        raise InputError(f"the plan schedules {steps} operators but has {len(ops)} in ops {hint}")
    tiers = {tier["name"] for tier in plan["target"]["tiers"]}
    for index, b in enumerate(plan["buffers"]):
        if not 0 <= b["start"] <= b["end"] < steps or b["tier"] not in tiers:
            raise InputError(
                f"the plan's buffers[{index}] ({b['tensor']!r}) has steps [{b['start']}, "
                f"{b['end']}] outside the schedule (0 to {steps - 1}) or unknown tier "
                f"{b['tier']!r} {hint}"
            )
