"""The cost model: FLOPs, bytes per tier and a roofline time for each operator.

Per operator: FLOPs from its shapes; bytes read and written per tier (a tiled
operator's DDR/L2<->L1 traffic comes from its tiling); time = max(compute time,
sum of tier bytes / tier bandwidth) + the tier latency of each tensor transfer.
The latency of one inference is the sum over operators, on several devices the
transfers between them included (one inference runs through the stages in turn).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from tierplan.compiler.ir import TRANSFER_OP, IRGraph, Operator, Tensor
from tierplan.compiler.target import Target


@dataclass(frozen=True, slots=True)
class OpCost:
    """Estimated cost of one operator."""

    name: str
    op_type: str
    device: int
    flops: int
    bytes_by_tier: dict[str, int]
    seconds: float


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

    A ``Transfer`` (inserted at a device cut) takes its bytes over the link.
    """
    if op.op_type == TRANSFER_OP:
        seconds = ir.tensor(op.inputs[0]).nbytes / target.link_bandwidth
        return OpCost(op.name, op.op_type, op.device, 0, {}, seconds)
    traffic: dict[str, int] = defaultdict(int)
    latency = 0.0
    default_tier = target.memory_tier.name
    for name, count in moved_bytes(ir, op).items():
        tier = target.tier(ir.tensor(name).tier or default_tier)
        traffic[tier.name] += count
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
    )


def estimate(ir: IRGraph, target: Target) -> list[OpCost]:
    """Cost of every operator, in schedule order."""
    return [operator_cost(ir, op, target) for op in ir.scheduled_operators()]
