"""The cost model: FLOPs, bytes per tier and a roofline time for each operator.

Per operator: FLOPs from its shapes; bytes read and written per tier (a tiled
operator's DDR/L2<->L1 traffic comes from its tiling); time = max(compute time,
sum of tier bytes / tier bandwidth) + the tier latency of each tensor transfer.
The latency of one inference is the sum over operators, on several devices the
transfers between them included (one inference runs through the stages in turn).

The plan carries each operator's cost (``ops[*].cost``: :func:`cost_entry`), so
that ``report`` and ``inspect`` show the figures the compile computed
(:func:`cost_of_entry`) instead of costing the plan again.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tierplan.compiler.aliasing import moves_nothing
from tierplan.compiler.ir import TRANSFER_OP, IRGraph, Operator, Tensor
from tierplan.compiler.target import Target


@dataclass(frozen=True, slots=True)
class OpCost:
    """Estimated cost of one operator.

    ``bytes_by_tensor`` splits ``bytes_by_tier`` by tensor: ``{tensor: {tier: bytes}}``.
    """

    name: str
    op_type: str
    device: int
    flops: int
    bytes_by_tier: dict[str, int]
    seconds: float
    bytes_by_tensor: dict[str, dict[str, int]] = field(default_factory=dict)


def _elements(tensor: Tensor) -> int:
    return math.prod(tensor.shape)


def operator_flops(ir: IRGraph, op: Operator) -> int:
    """Floating-point operations of ``op`` (multiply-adds count two)."""
    inputs = [ir.tensor(name) for name in op.inputs if name]
    outputs = [ir.tensor(name) for name in op.outputs if name]
    out_elements = sum(_elements(t) for t in outputs)
    if op.op_type == "MatMul" and len(inputs) >= 2 and inputs[0].shape:
        return 2 * out_elements * inputs[0].shape[-1]
    if op.op_type == "Gemm" and len(inputs) >= 2 and len(inputs[0].shape) == 2:
        depth = inputs[0].shape[0] if op.attributes.get("transA") else inputs[0].shape[1]
        return 2 * out_elements * depth
    if op.op_type == "Conv" and len(inputs) >= 2 and len(inputs[1].shape) >= 2:
        return 2 * out_elements * math.prod(inputs[1].shape[1:])
    if op.op_type == "ConvTranspose" and len(inputs) >= 2 and len(inputs[1].shape) >= 2:
        return 2 * _elements(inputs[0]) * math.prod(inputs[1].shape[1:])
    return max([out_elements, *(_elements(t) for t in inputs)])


def moved_bytes(ir: IRGraph, op: Operator) -> dict[str, int]:
    """Bytes ``op`` moves per tensor it reads or writes, from or to the tensor's tier.

    A tiled operator moves each tensor as often as its tiling reloads it; an
    untiled one moves each tensor once.
    """
    tiled = op.tiles.traffic_by_tensor if op.tiles is not None else {}
    names = [*op.read_tensors(), *(n for n in op.outputs if n)]
    return {name: tiled.get(name, ir.tensor(name).nbytes) for name in dict.fromkeys(names)}


def operator_cost(ir: IRGraph, op: Operator, target: Target) -> OpCost:
    """Roofline estimate of ``op`` with its tensors in the tiers the plan gave them.

    A ``Transfer`` (inserted at a device cut) takes its bytes over the link; a
    view or a Concat of parts already in place
    (:func:`~tierplan.compiler.aliasing.moves_nothing`) costs nothing.
    """
    if moves_nothing(ir, op):
        return OpCost(op.name, op.op_type, op.device, 0, {}, 0.0)
    if op.op_type == TRANSFER_OP:
        seconds = ir.tensor(op.inputs[0]).nbytes / target.link_bandwidth
        return OpCost(op.name, op.op_type, op.device, 0, {}, seconds)
    traffic: dict[str, int] = defaultdict(int)
    by_tensor: dict[str, dict[str, int]] = {}
    latency = 0.0
    default_tier = target.memory_tier.name
    for name, count in moved_bytes(ir, op).items():
        tier = target.tier(ir.tensor(name).tier or default_tier)
        traffic[tier.name] += count
        moved = by_tensor.setdefault(name, {})
        moved[tier.name] = moved.get(tier.name, 0) + count
        latency += tier.latency
    if op.tiles is not None and not op.tiles.traffic_by_tensor:  # no per-tensor split
        traffic[default_tier] = max(traffic[default_tier], op.tiles.traffic_bytes)
    flops = operator_flops(ir, op)
    dtype = ir.tensor(op.outputs[0]).dtype if op.outputs and op.outputs[0] else "default"
    compute = flops / target.peak_flops(dtype)
    memory = sum(count / target.tier(tier).bandwidth for tier, count in traffic.items())
    return OpCost(
        op.name,
        op.op_type,
        op.device,
        flops,
        dict(sorted(traffic.items())),
        max(compute, memory) + latency,
        by_tensor,
    )


def estimate(ir: IRGraph, target: Target) -> list[OpCost]:
    """Cost of every operator, in schedule order."""
    return [operator_cost(ir, op, target) for op in ir.scheduled_operators()]


def cost_entry(cost: OpCost, plan_name: Callable[[str], str] = str) -> dict[str, Any]:
    """``ops[*].cost`` of the plan: FLOPs, seconds and bytes per tensor and tier.

    ``plan_name`` maps an IR tensor to its plan name (a device copy to its original).
    """
    traffic: dict[str, dict[str, int]] = {}
    for tensor, tiers in cost.bytes_by_tensor.items():
        moved = traffic.setdefault(plan_name(tensor), {})
        for tier, count in tiers.items():
            moved[tier] = moved.get(tier, 0) + count
    return {"flops": cost.flops, "seconds": cost.seconds, "traffic": traffic}


def cost_of_entry(op: Mapping[str, Any]) -> OpCost | None:
    """The cost a plan's operator entry carries (``None`` when it has no ``cost``)."""
    entry = op.get("cost")
    if not isinstance(entry, Mapping):
        return None
    by_tensor = {
        str(t): {str(k): int(v) for k, v in tiers.items()}
        for t, tiers in entry.get("traffic", {}).items()
    }
    by_tier: dict[str, int] = defaultdict(int)
    for tiers in by_tensor.values():
        for tier, count in tiers.items():
            by_tier[tier] += count
    return OpCost(
        str(op["node"]),
        str(op["op_type"]),
        int(op.get("device", 0)),
        int(entry.get("flops", 0)),
        dict(sorted(by_tier.items())),
        float(entry.get("seconds", 0.0)),
        by_tensor,
    )
