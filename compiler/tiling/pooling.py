"""Pooling (MaxPool, AveragePool, LpPool) as a loop nest over batch, channels and a halo'd window.

Each channel is pooled alone, so channels and batch split freely; a spatial tile
of ``t`` outputs reads ``(t - 1) * stride + (kernel - 1) * dilation + 1`` inputs.
Global pooling reduces whole planes and is tiled with the reductions.
"""

from __future__ import annotations

from tierplan.compiler.ir import IRGraph, Operator
from tierplan.compiler.tiling.nest import Axis, Dim, LoopNest, Operand
from tierplan.compiler.tiling.operands import element_bytes, inputs_of, int_list, outputs_of

OP_TYPES = frozenset({"MaxPool", "AveragePool", "LpPool"})


def pooling_nest(ir: IRGraph, op: Operator) -> LoopNest | None:
    """The loop nest of a windowed pooling operator."""
    x = inputs_of(ir, op)[0]
    outputs = outputs_of(ir, op)
    rank = len(x.shape) - 2
    kernel = int_list(op, "kernel_shape", [])
    if rank < 1 or len(kernel) != rank:
        return None
    if any(len(y.shape) != rank + 2 for y in outputs):
        return None
    strides = int_list(op, "strides", [1] * rank)
    dilations = int_list(op, "dilations", [1] * rank)
    spatial = [f"s{i}" for i in range(rank)]
    out_shape = outputs[0].shape
    axes = (
        Axis("n", x.shape[0]),
        Axis("c", x.shape[1]),
        *(Axis(name, out_shape[2 + i]) for i, name in enumerate(spatial)),
    )
    window = tuple(
        Dim(name, x.shape[2 + i], strides[i], (kernel[i] - 1) * dilations[i] + 1)
        for i, name in enumerate(spatial)
    )
    operands = [
        Operand(
            "X", x.name, (Dim("n", x.shape[0]), Dim("c", x.shape[1]), *window), element_bytes(x)
        )
    ]
    for index, y in enumerate(outputs):
        dims = (
            Dim("n", y.shape[0]),
            Dim("c", y.shape[1]),
            *(Dim(s, y.shape[2 + i]) for i, s in enumerate(spatial)),
        )
        operands.append(Operand(f"Y{index}", y.name, dims, element_bytes(y), True))
    return LoopNest(op.name, axes, tuple(operands), (tuple(a.name for a in axes),))
