"""Softmax, normalizations and reductions: the reduced axes are never split.

Splitting a reduced axis would need the operator rewritten (partial maxima and
sums combined in a second pass), so those axes stay whole in every tile; the
other axes split freely (row tiling). When even one row does not fit L1, the
tiling pass reports which axis would have to be split.
"""

from __future__ import annotations

from tierplan.compiler.ir import IRGraph, Operator, Tensor
from tierplan.compiler.tiling.nest import Axis, Dim, LoopNest, Operand
from tierplan.compiler.tiling.operands import (
    broadcast_operand,
    element_bytes,
    inputs_of,
    int_list,
    normalized_axis,
    output_axes,
    outputs_of,
)

SOFTMAX_LIKE = frozenset({"Softmax", "LogSoftmax", "Hardmax"})
NORMALIZATIONS = frozenset({"LayerNormalization", "InstanceNormalization", "LpNormalization"})
GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
REDUCTIONS = frozenset(
    {
        "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
        "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin",
    }
)  # fmt: skip
OP_TYPES = SOFTMAX_LIKE | NORMALIZATIONS | GLOBAL_POOLS | REDUCTIONS


def _axis(op: Operator, default: int, rank: int) -> int:
    value = op.attributes.get("axis", default)
    return normalized_axis(value if isinstance(value, int) else default, rank)


def reduced_axes(ir: IRGraph, op: Operator, x: Tensor, y: Tensor) -> frozenset[int] | None:
    """Indices of ``x``'s dimensions that the operator reduces (``None``: unknown)."""
    rank = len(x.shape)
    if op.op_type in SOFTMAX_LIKE:
        if ir.model.opset >= 13:
            return frozenset({_axis(op, -1, rank)})
        return frozenset(range(_axis(op, 1, rank), rank))  # coerced to 2-D at axis
    if op.op_type == "LayerNormalization":
        return frozenset(range(_axis(op, -1, rank), rank))
    if op.op_type in GLOBAL_POOLS or op.op_type == "InstanceNormalization":
        return frozenset(range(2, rank))
    if op.op_type == "LpNormalization":
        return frozenset({_axis(op, -1, rank)})
    if op.op_type in ("ArgMax", "ArgMin"):
        return frozenset({_axis(op, 0, rank)})
    axes = int_list(op, "axes", [])
    if axes:
        return frozenset(normalized_axis(a, rank) for a in axes)
    if len(y.shape) == rank:  # keepdims: the reduced dimensions became 1
        return frozenset(i for i in range(rank) if y.shape[i] == 1 and x.shape[i] != 1)
    if not y.shape or (len(op.inputs) < 2 and not op.attributes.get("noop_with_empty_axes")):
        return frozenset(range(rank))  # no axes given: everything is reduced
    return None


def _output_operand(
    label: str, y: Tensor, axes: tuple[Axis, ...], reduced: frozenset[int]
) -> Operand:
    """An output whose reduced dimensions are kept as 1 or dropped (keepdims=0)."""
    if len(y.shape) == len(axes):
        return broadcast_operand(label, y, axes, output=True)
    kept = [axis for index, axis in enumerate(axes) if index not in reduced]
    dims = tuple(
        Dim(axis.name, size) if size == axis.size else Dim(None, size)
        for axis, size in zip(kept, y.shape, strict=False)
    )
    return Operand(label, y.name, dims, element_bytes(y), True)


def reduction_nest(ir: IRGraph, op: Operator) -> LoopNest | None:
    """The loop nest of a reduction-like operator, its reduced axes whole."""
    tensors = inputs_of(ir, op)
    outputs = outputs_of(ir, op)
    x = tensors[0]
    reduced = reduced_axes(ir, op, x, outputs[0])
    if reduced is None or not all(0 <= i < len(x.shape) for i in reduced):
        return None
    axes = output_axes("d", x.shape, reduced)
    operands = [broadcast_operand(f"in{i}", t, axes) for i, t in enumerate(tensors)]
    if op.op_type == "InstanceNormalization":  # per-channel scale and bias on axis 1
        operands[1:] = [
            Operand(f"in{i}", t.name, (Dim(axes[1].name, t.shape[0]),), element_bytes(t))
            for i, t in enumerate(tensors[1:], start=1)
        ]
    operands += [_output_operand(f"out{i}", y, axes, reduced) for i, y in enumerate(outputs)]
    return LoopNest(op.name, axes, tuple(operands), (tuple(a.name for a in axes),))
