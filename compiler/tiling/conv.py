"""Convolution (Conv, grouped and depthwise) as a loop nest with halos.

``Y[n, g, co, s] = sum_{ci, r} X[n, g, ci, s * stride + r * dilation] * W[g, co, ci, r]``
per group ``g`` (``co``, ``ci``: channels within a group). A spatial tile of ``t``
output rows reads ``(t - 1) * stride + (kernel - 1) * dilation + 1`` input rows:
the halo it shares with its neighbours is loaded again by each tile. A depthwise
convolution has one channel per group, so its groups are the channel axis.
Orders tried: every order of (spatial, ``co``, ``ci``) inside the batch and
group loops; ``ci`` is the reduction (partial sums when it is not innermost).
"""

from __future__ import annotations

import math

from tierplan.compiler.ir import IRGraph, Operator
from tierplan.compiler.tiling.nest import Axis, Dim, LoopNest, Operand, orders_of
from tierplan.compiler.tiling.operands import element_bytes, inputs_of, int_list, outputs_of

OP_TYPES = frozenset({"Conv"})


def conv_nest(ir: IRGraph, op: Operator) -> LoopNest | None:
    """The loop nest of a Conv (any number of spatial dimensions)."""
    tensors = inputs_of(ir, op)
    if len(tensors) < 2:
        return None
    x, w, y = tensors[0], tensors[1], outputs_of(ir, op)[0]
    rank = len(x.shape) - 2
    if rank < 1 or len(w.shape) != rank + 2 or len(y.shape) != rank + 2:
        return None
    value = op.attributes.get("group", 1)
    group = value if isinstance(value, int) else 1
    batch, channels = x.shape[0], x.shape[1]
    if group < 1 or channels % group or w.shape[0] % group:
        return None
    co, ci = w.shape[0] // group, channels // group
    kernel = w.shape[2:]
    strides = int_list(op, "strides", [1] * rank)
    dilations = int_list(op, "dilations", [1] * rank)
    spatial = tuple(f"s{i}" for i in range(rank))
    axes = (
        Axis("n", batch),
        Axis("g", group),
        Axis("co", co),
        Axis("ci", ci),
        *(Axis(name, size) for name, size in zip(spatial, y.shape[2:], strict=True)),
    )
    halo = tuple(
        Dim(name, x.shape[2 + i], strides[i], (kernel[i] - 1) * dilations[i] + 1)
        for i, name in enumerate(spatial)
    )
    operands = [
        Operand(
            "X", x.name, (Dim("n", batch), Dim("g", group), Dim("ci", ci), *halo), element_bytes(x)
        ),
        Operand(
            "W",
            w.name,
            (Dim("g", group), Dim("co", co), Dim("ci", ci), Dim(None, math.prod(kernel))),
            element_bytes(w),
        ),
    ]
    if len(tensors) > 2:
        operands.append(
            Operand(
                "B", tensors[2].name, (Dim("g", group), Dim("co", co)), element_bytes(tensors[2])
            )
        )
    out_dims = (
        Dim("n", batch),
        Dim("g", group),
        Dim("co", co),
        *(Dim(s, y.shape[2 + i]) for i, s in enumerate(spatial)),
    )
    operands.append(Operand("Y", y.name, out_dims, element_bytes(y), True))
    return LoopNest(
        op.name, axes, tuple(operands), orders_of([spatial, ("co",), ("ci",)], outer=("n", "g"))
    )
