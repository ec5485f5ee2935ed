"""Softmax, normalizations and reductions: rows tiled, and the reduced axes split too.

The kept axes split freely (row tiling) and loop outside the reduced ones, so an
output that does not depend on a reduced axis stays in L1 while that axis loops:
a reduction (ReduceSum/Mean/Max/..., global pooling, ArgMax) accumulates partial
results in its output tile and writes it once. Operators that need a row's
statistics before they can write it keep those in an L1 accumulator (a local
operand, per kept element: running maximum and sum for Softmax and
ReduceLogSumExp, mean and variance for the normalizations, the best value so far
for ArgMax/ArgMin/Hardmax). When a reduced axis is split, Softmax/LogSoftmax,
LayerNormalization/InstanceNormalization/GroupNormalization and LpNormalization
make two passes over the row: the first gathers the statistics (online: running
maximum and rescaled sum; mean and variance), the second reads the row again to
write it; that second read of the input is counted as traffic (``rereads``).
When the whole row fits, the search keeps it whole and the input moves once.
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
NORMALIZATIONS = frozenset(
    {"LayerNormalization", "InstanceNormalization", "GroupNormalization", "LpNormalization"}
)
GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
REDUCTIONS = frozenset(
    {
        "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
        "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin",
    }
)  # fmt: skip
OP_TYPES = SOFTMAX_LIKE | NORMALIZATIONS | GLOBAL_POOLS | REDUCTIONS

# Values per kept element held in the L1 accumulator (in the input's element size).
STATISTICS = {
    "Softmax": 2, "LogSoftmax": 2, "ReduceLogSumExp": 2, "LayerNormalization": 2,
    "InstanceNormalization": 2, "GroupNormalization": 2, "LpNormalization": 1,
    "ArgMax": 1, "ArgMin": 1, "Hardmax": 2,
}  # fmt: skip
# Operators that read their input again, to write the output, once a row is split.
TWO_PASS = frozenset(
    {"Softmax", "LogSoftmax", "LayerNormalization", "InstanceNormalization"}
    | {"GroupNormalization", "LpNormalization"}
)


def _axis(op: Operator, default: int, rank: int) -> int:
    value = op.attributes.get("axis", default)
    return normalized_axis(value if isinstance(value, int) else default, rank)


def _dropped_axes(x: Tensor, y: Tensor) -> frozenset[int] | None:
    """The dimensions of ``x`` that ``y`` (keepdims=0) lacks: the leftmost consistent guess."""
    dropped, kept = set(), 0
    for index, size in enumerate(x.shape):
        if kept < len(y.shape) and y.shape[kept] == size:
            kept += 1
        else:
            dropped.add(index)
    return frozenset(dropped) if kept == len(y.shape) else None


def reduced_axes(ir: IRGraph, op: Operator, x: Tensor, y: Tensor) -> frozenset[int] | None:
    """Indices of ``x``'s dimensions that the operator reduces (``None``: unknown).

    Axes given as a tensor input (opset 18) are read off the shapes.
    """
    rank = len(x.shape)
    if op.op_type in SOFTMAX_LIKE:
        if ir.model.opset >= 13:
            return frozenset({_axis(op, -1, rank)})
        return frozenset(range(_axis(op, 1, rank), rank))  # coerced to 2-D at axis
    if op.op_type == "LayerNormalization":
        return frozenset(range(_axis(op, -1, rank), rank))
    if op.op_type in GLOBAL_POOLS or op.op_type in ("InstanceNormalization", "GroupNormalization"):
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
    return _dropped_axes(x, y)


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


def _group_axes(x: Tensor, groups: int) -> tuple[Axis, ...] | None:
    """GroupNormalization's axes: batch, group, channel within the group, spatial ones."""
    channels = x.shape[1]
    if groups < 1 or channels % groups:
        return None
    return (
        Axis("d0", x.shape[0]),
        Axis("g", groups),
        Axis("cg", channels // groups),
        *(Axis(f"d{i}", size) for i, size in enumerate(x.shape[2:], start=2)),
    )


def _group_normalization(op: Operator, tensors: list[Tensor], y: Tensor) -> LoopNest | None:
    x = tensors[0]
    groups = op.attributes.get("num_groups")
    axes = _group_axes(x, groups) if isinstance(groups, int) and len(x.shape) >= 2 else None
    if axes is None:
        return None
    spatial = tuple(Dim(a.name, a.size) for a in axes[3:])
    whole = (Dim("d0", x.shape[0]), Dim("g", axes[1].size), Dim("cg", axes[2].size), *spatial)
    operands = [_two_pass_input(Operand("in0", x.name, whole, element_bytes(x)), axes[2:])]
    for index, t in enumerate(tensors[1:], start=1):  # scale, bias: per group or per channel
        dims = (Dim("g", axes[1].size),) + (
            (Dim("cg", axes[2].size),) if t.shape != (axes[1].size,) else ()
        )
        operands.append(Operand(f"in{index}", t.name, dims, element_bytes(t)))
    operands.append(Operand("out0", y.name, whole, element_bytes(y), True))
    operands.append(_statistics("GroupNormalization", x, axes[:2]))
    kept, reduced = axes[:2], axes[2:]
    return LoopNest(op.name, axes, tuple(operands), (tuple(a.name for a in kept + reduced),))


def _two_pass_input(operand: Operand, reduced: tuple[Axis, ...]) -> Operand:
    """The input read once more when a reduced axis is split (see the module docstring)."""
    return Operand(
        operand.label,
        operand.tensor,
        operand.dims,
        operand.element_bytes,
        rereads=1,
        reread_axes=frozenset(a.name for a in reduced),
    )


def _statistics(op_type: str, x: Tensor, kept: tuple[Axis, ...]) -> Operand:
    dims = tuple(Dim(a.name, a.size) for a in kept)
    return Operand("acc", "", dims, STATISTICS[op_type] * element_bytes(x), local=True)


def reduction_nest(ir: IRGraph, op: Operator) -> LoopNest | None:
    """The loop nest of a reduction-like operator: kept axes outside, reduced axes inside."""
    tensors = inputs_of(ir, op)
    outputs = outputs_of(ir, op)
    x = tensors[0]
    if op.op_type == "GroupNormalization":
        return _group_normalization(op, tensors, outputs[0])
    reduced = reduced_axes(ir, op, x, outputs[0])
    if reduced is None or not all(0 <= i < len(x.shape) for i in reduced):
        return None
    if op.op_type in REDUCTIONS and len(op.inputs) > 1:
        tensors = tensors[:1]  # the axes tensor is read once, before the loop
    axes = output_axes("d", x.shape)
    kept = tuple(a for i, a in enumerate(axes) if i not in reduced)
    inner = tuple(a for i, a in enumerate(axes) if i in reduced)
    operands = [broadcast_operand(f"in{i}", t, axes) for i, t in enumerate(tensors)]
    if op.op_type in TWO_PASS:
        operands[0] = _two_pass_input(operands[0], inner)
    if op.op_type == "InstanceNormalization":  # per-channel scale and bias on axis 1
        operands[1:] = [
            Operand(f"in{i}", t.name, (Dim(axes[1].name, t.shape[0]),), element_bytes(t))
            for i, t in enumerate(tensors[1:], start=1)
        ]
    operands += [_output_operand(f"out{i}", y, axes, reduced) for i, y in enumerate(outputs)]
    if op.op_type in STATISTICS:
        operands.append(_statistics(op.op_type, x, kept))
    return LoopNest(op.name, axes, tuple(operands), (tuple(a.name for a in kept + inner),))
