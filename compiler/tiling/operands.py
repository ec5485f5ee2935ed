"""Helpers that turn IR tensors into loop-nest operands (shared by every tiler)."""

from __future__ import annotations

import math

from tierplan.compiler.ir import IRGraph, Operator, Tensor
from tierplan.compiler.tiling.nest import Axis, Dim, Operand


def element_bytes(tensor: Tensor) -> float:
    """Bytes per element (fractional for sub-byte types)."""
    return tensor.nbytes / max(1, math.prod(tensor.shape))


def inputs_of(ir: IRGraph, op: Operator) -> list[Tensor]:
    """The tensors in the operator's input slots (omitted optional inputs skipped)."""
    return [ir.tensor(name) for name in op.inputs if name]


def outputs_of(ir: IRGraph, op: Operator) -> list[Tensor]:
    """The operator's output tensors that exist."""
    return [ir.tensor(name) for name in op.outputs if name]


def output_axes(
    prefix: str, shape: tuple[int, ...], whole: frozenset[int] = frozenset()
) -> tuple[Axis, ...]:
    """One axis per dimension of ``shape`` (``prefix0``, ``prefix1`` ...); ``whole`` ones are not split."""
    return tuple(Axis(f"{prefix}{i}", size, i in whole) for i, size in enumerate(shape))


def broadcast_operand(
    label: str, tensor: Tensor, axes: tuple[Axis, ...], output: bool = False
) -> Operand:
    """An operand broadcast against ``axes`` (numpy rules: right-aligned, size-1 dims repeat)."""
    offset = len(axes) - len(tensor.shape)
    dims = []
    for index, size in enumerate(tensor.shape):
        axis = axes[offset + index] if offset + index >= 0 else None
        if axis is not None and size == axis.size and size > 1:
            dims.append(Dim(axis.name, size))
        else:
            dims.append(Dim(None, size))
    return Operand(label, tensor.name, tuple(dims), element_bytes(tensor), output)


def normalized_axis(axis: int, rank: int) -> int:
    """An ONNX axis attribute (negative counts from the end) as an index."""
    return axis + rank if axis < 0 else axis


def int_list(op: Operator, name: str, default: list[int]) -> list[int]:
    """An integer-list attribute, or ``default`` when it is absent or empty."""
    value = op.attributes.get(name)
    return [int(v) for v in value] if isinstance(value, list) and value else default
