"""Data movement (Concat, Split, Slice, Transpose, Gather, Pad, Expand ...) as a copy stream.

These operators compute nothing: each output byte is copied from bytes the
operator reads. They are tiled as one stream over the output elements: a tile of
``t`` output elements carries ``t / total`` of every tensor's moved bytes, so the
traffic is each tensor's bytes once. A gather reads only the rows it selects
(its data operand moves as many bytes as the output); a slice reads only its slice.
"""

from __future__ import annotations

import math

from tierplan.compiler.ir import IRGraph, Operator
from tierplan.compiler.tiling.nest import Axis, Dim, LoopNest, Operand
from tierplan.compiler.tiling.operands import inputs_of, outputs_of

GATHERS = frozenset({"Gather", "GatherElements", "GatherND", "Slice"})
OP_TYPES = GATHERS | frozenset(
    {
        "Concat", "Split", "Transpose", "Pad", "Expand", "Tile", "Reshape", "Flatten",
        "Squeeze", "Unsqueeze", "Identity", "DepthToSpace", "SpaceToDepth", "Resize",
        "Upsample", "ReverseSequence",
    }
)  # fmt: skip


def movement_nest(ir: IRGraph, op: Operator) -> LoopNest | None:
    """One stream axis ``x`` over the output elements; every tensor moves a share per element."""
    outputs = outputs_of(ir, op)
    written = sum(y.nbytes for y in outputs)
    elements = sum(math.prod(y.shape) for y in outputs)
    if not elements:
        return None
    moved = {}
    for slot, tensor in enumerate(inputs_of(ir, op)):
        data = slot == 0 and op.op_type in GATHERS
        moved[tensor.name] = min(tensor.nbytes, written) if data else tensor.nbytes
    operands = [
        Operand(f"in{i}", name, (Dim("x", elements),), nbytes / elements)
        for i, (name, nbytes) in enumerate(moved.items())
    ]
    operands += [
        Operand(f"out{i}", y.name, (Dim("x", elements),), y.nbytes / elements, True)
        for i, y in enumerate(outputs)
    ]
    return LoopNest(op.name, (Axis("x", elements),), tuple(operands), (("x",),))
