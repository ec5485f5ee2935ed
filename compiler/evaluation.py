"""The evaluator: validate a planned IR, then cost it.

:func:`evaluate` builds the plan from the IR, runs the validator (an invalid plan
gets no cost, only its violations), writes each operator's cost into the plan
(``ops[*].cost``) and returns an :class:`Evaluation` with the memory summary, the
naive no-reuse baseline and the latency estimate.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace

from tierplan.compiler.cost import OpCost, cost_entry, estimate
from tierplan.compiler.errors import PassFailure
from tierplan.compiler.ir import TRANSFER_OP, IRGraph
from tierplan.compiler.plan import Plan, PlanBuffer, build_plan, memory_summary
from tierplan.compiler.scheduling import onnx_order_bound
from tierplan.compiler.target import Target
from tierplan.compiler.validate import validate_plan

ACTIVATION_KINDS = frozenset({"input", "output", "activation", "scratch"})


@dataclass(slots=True)
class Evaluation:
    """The evaluator's verdict on a valid plan.

    ``peak_bytes`` and ``lower_bound_bytes`` are those of the plan summary, per
    ``"<device>/<tier>"``; the ``activation_*`` ones count only non-weight buffers
    (the region that packing decides); ``activation_bound_without_aliasing`` is
    that region's max-live when no tensor reuses another's bytes (the bound that
    in-place reuse goes below); ``no_reuse_bytes`` is the naive arena that gives
    every activation its own aligned bytes. ``onnx_order_bound_bytes`` is the
    activations' max-live without aliasing had the operators run in the ONNX order
    (all regions together; also ``summary.onnx_order_bound_bytes`` in the plan): what
    memory-aware scheduling is measured against. On several devices,
    ``transfer_bytes`` gives the bytes per link (``"<from>-><to>"``) and
    ``device_seconds`` each device's busy time per inference: its operators plus the
    transfers it receives (pipeline stages: the slowest one sets the throughput).
    """

    plan: Plan
    peak_bytes: dict[str, int]
    lower_bound_bytes: dict[str, int]
    activation_peak_bytes: dict[str, int]
    activation_lower_bound_bytes: dict[str, int]
    activation_bound_without_aliasing: dict[str, int]
    no_reuse_bytes: dict[str, int]
    onnx_order_bound_bytes: int
    latency_s: float
    op_costs: list[OpCost] = field(default_factory=list)
    transfer_bytes: dict[str, int] = field(default_factory=dict)
    device_seconds: dict[int, float] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        """Inferences per second with the devices working as a pipeline (1 / slowest)."""
        slowest = max(self.device_seconds.values(), default=self.latency_s)
        return 1.0 / slowest if slowest else float("inf")

    def seconds_by_op_type(self) -> dict[str, float]:
        """Estimated time per op type, largest first."""
        totals: dict[str, float] = defaultdict(float)
        for cost in self.op_costs:
            totals[cost.op_type] += cost.seconds
        return dict(sorted(totals.items(), key=lambda item: (-item[1], item[0])))

    def bytes_by_tier(self) -> dict[str, int]:
        """Bytes the operators move from or to each tier (tiling traffic where tiled)."""
        totals: dict[str, int] = defaultdict(int)
        for cost in self.op_costs:
            for tier, count in cost.bytes_by_tier.items():
                totals[tier] += count
        return dict(sorted(totals.items()))


def evaluate(ir: IRGraph, target: Target, validate: bool = True) -> Evaluation:
    """Validate and cost the plan of ``ir``; raise :class:`PassFailure` if it is invalid.
    ``validate=False`` only costs it (a search screening plans it validates once chosen)."""
    plan = build_plan(ir, target)
    violations = validate_plan(plan, ir) if validate else []
    if violations:
        shown = "; ".join(str(v) for v in violations[:3])
        more = f" (and {len(violations) - 3} more)" if len(violations) > 3 else ""
        raise PassFailure(f"the plan is invalid: {shown}{more}")
    costs = estimate(ir, target)
    for entry, cost in zip(plan["ops"], costs, strict=True):
        entry["cost"] = cost_entry(cost, ir.plan_name)
    latency = sum(cost.seconds for cost in costs)
    plan["summary"]["latency_s"] = latency
    transfers, busy = device_times(ir, costs)
    if len(busy) > 1:
        plan["summary"]["device_seconds"] = {str(d): seconds for d, seconds in busy.items()}
        plan["summary"]["transfer_bytes"] = transfers
    plan["summary"]["onnx_order_bound_bytes"] = onnx_order_bound(ir)
    buffers = PlanBuffer.of_plan(plan)
    activation_peak, activation_bound = memory_summary(buffers, set(ACTIVATION_KINDS))
    unaliased = [replace(b, alias_of=None) for b in buffers]
    _, bound_without_aliasing = memory_summary(unaliased, set(ACTIVATION_KINDS))
    no_reuse: dict[str, int] = defaultdict(int)
    for b in buffers:
        if b.kind in ACTIVATION_KINDS:
            no_reuse[b.region_key] += target.align_up(b.nbytes)
    return Evaluation(
        plan=plan,
        peak_bytes=plan["summary"]["peak_bytes"],
        lower_bound_bytes=plan["summary"]["lower_bound_bytes"],
        activation_peak_bytes=activation_peak,
        activation_lower_bound_bytes=activation_bound,
        activation_bound_without_aliasing=bound_without_aliasing,
        no_reuse_bytes=dict(sorted(no_reuse.items())),
        onnx_order_bound_bytes=plan["summary"]["onnx_order_bound_bytes"],
        latency_s=latency,
        op_costs=costs,
        transfer_bytes=transfers,
        device_seconds=busy,
    )


def device_times(ir: IRGraph, costs: list[OpCost]) -> tuple[dict[str, int], dict[int, float]]:
    """Bytes per link and busy seconds per device (a transfer counts for its receiver)."""
    transfers: dict[str, int] = defaultdict(int)
    busy: dict[int, float] = defaultdict(float)
    for cost in costs:
        op = ir.operator(cost.name)
        device = cost.device
        receiver = op.attributes.get("to_device")
        if op.op_type == TRANSFER_OP and isinstance(receiver, int):
            device = receiver
            transfers[f"{cost.device}->{device}"] += ir.tensor(op.inputs[0]).nbytes
        busy[device] += cost.seconds
    return dict(sorted(transfers.items())), dict(sorted(busy.items()))
