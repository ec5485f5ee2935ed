"""Elementwise and broadcasting operators as a loop nest over the output's dimensions.

Every output element depends only on the input elements at the same (broadcast)
index, so every axis splits freely. A broadcast input (a bias, a scalar) does not
depend on the axes it is repeated along: it stays resident while they loop.
BatchNormalization (inference) is elementwise with per-channel parameters on axis 1.
"""

from __future__ import annotations

from tierplan.compiler.ir import IRGraph, Operator
from tierplan.compiler.tiling.nest import Dim, LoopNest, Operand
from tierplan.compiler.tiling.operands import (
    broadcast_operand,
    element_bytes,
    inputs_of,
    output_axes,
    outputs_of,
)

OP_TYPES = frozenset(
    {
        "Abs", "Acos", "Asin", "Atan", "Ceil", "Clip", "Cos", "Cosh", "Elu", "Erf", "Exp",
        "Floor", "Gelu", "HardSigmoid", "HardSwish", "IsInf", "IsNaN", "LeakyRelu", "Log",
        "Mish", "Neg", "Not", "Reciprocal", "Relu", "Round", "Selu", "Sigmoid", "Sign", "Sin",
        "Sinh", "Softplus", "Softsign", "Sqrt", "Tan", "Tanh", "ThresholdedRelu", "Cast",
        "Dropout", "Add", "And", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "Div",
        "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Max", "Mean", "Min",
        "Mod", "Mul", "Or", "Pow", "PRelu", "Sub", "Sum", "Where", "Xor",
        "BatchNormalization",
    }
)  # fmt: skip


def elementwise_nest(ir: IRGraph, op: Operator) -> LoopNest | None:
    """The loop nest of an elementwise operator (outputs of the first output's shape)."""
    outputs = outputs_of(ir, op)
    shape = outputs[0].shape
    if any(y.shape != shape for y in outputs[:1]):
        return None
    axes = output_axes("d", shape)
    operands = []
    for index, tensor in enumerate(inputs_of(ir, op)):
        if op.op_type == "BatchNormalization" and index > 0 and len(shape) > 1:
            dims = tuple(
                Dim(axes[1].name, size) if size == shape[1] and size > 1 else Dim(None, size)
                for size in tensor.shape
            )
            operands.append(Operand(f"in{index}", tensor.name, dims, element_bytes(tensor)))
        else:
            operands.append(broadcast_operand(f"in{index}", tensor, axes))
    # Extra outputs (Dropout's mask) have the first output's shape; others are not tiled.
    operands += [
        broadcast_operand(f"out{index}", y, axes, output=True)
        for index, y in enumerate(outputs)
        if y.shape == shape
    ]
    return LoopNest(op.name, axes, tuple(operands), (tuple(a.name for a in axes),))
