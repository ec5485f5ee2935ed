"""Where a slice view or a concat part lies inside the bytes it aliases (plan-format.md).

A row-major tensor keeps a contiguous range of its outermost non-unit axis in
contiguous bytes, so:

- a **slice view** (an output of Split, Slice or Gather with a scalar index that
  selects such a range of its input 0) lies at the byte position of that range in
  its source;
- a **concat part** (an input of a Concat along such an axis) lies at the byte
  position of its part in the Concat's output.

The functions here give those byte positions from the model's shapes, attributes
and constant inputs; ``None`` or no position when the operator selects no such
range (another axis, a step other than 1, an index not known before run time).
"""

from __future__ import annotations

import math

from tierplan.compiler.ir import IRGraph, Operator, Tensor

SLICE_VIEW_OPS = frozenset({"Split", "Slice", "Gather"})


def operator_axis(op: Operator, rank: int) -> int | None:
    """``op``'s ``axis`` attribute counted from the front of a rank-``rank`` shape (None
    when it is not an axis of that shape)."""
    axis = op.attributes.get("axis", 0)
    if not isinstance(axis, int) or not -rank <= axis < rank:
        return None
    return axis % rank


def _contiguous(shape: tuple[int, ...], axis: int) -> bool:
    """True when a range of ``axis`` is contiguous in row-major bytes (axes before it are unit)."""
    return math.prod(shape[:axis]) == 1


def _constant(ir: IRGraph, op: Operator, slot: int) -> list[int] | None:
    name = op.inputs[slot] if slot < len(op.inputs) else ""
    return ir.tensor(name).value if name and ir.has_tensor(name) else None


def slice_view_position(ir: IRGraph, op: Operator, output: str) -> int | None:
    """Byte position of ``output`` in ``op``'s input 0, if it is a slice view of it."""
    if op.op_type not in SLICE_VIEW_OPS or not op.inputs or output not in op.outputs:
        return None
    source = ir.tensor(op.inputs[0]).shape
    shape = ir.tensor(output).shape
    if not source:
        return None
    if op.op_type == "Split":
        axis = operator_axis(op, len(source))
        if axis is None or not _contiguous(source, axis):
            return None
        before = op.outputs[: op.outputs.index(output)]
        return sum(ir.tensor(name).nbytes for name in before)
    if op.op_type == "Gather":
        axis, index = operator_axis(op, len(source)), _constant(ir, op, 1)
        if axis is None or index is None or len(index) != 1 or ir.tensor(op.inputs[1]).shape:
            return None
        position = index[0] + source[axis] if index[0] < 0 else index[0]
        if not _contiguous(source, axis) or not 0 <= position < source[axis]:
            return None
        return position * ir.tensor(output).nbytes
    return _slice_position(ir, op, source, shape)


def _slice_position(
    ir: IRGraph, op: Operator, source: tuple[int, ...], shape: tuple[int, ...]
) -> int | None:
    """Slice (opset >= 10: starts, ends, axes, steps as inputs) that cuts one axis."""
    starts = _constant(ir, op, 1)
    if starts is None or len(shape) != len(source):
        return None
    axes = _constant(ir, op, 3) or list(range(len(starts)))
    steps = _constant(ir, op, 4) or [1] * len(starts)
    cut = [k for k in range(len(source)) if shape[k] != source[k]]
    if not cut:
        return 0  # the whole input
    axis = cut[0]
    if len(cut) > 1 or not _contiguous(source, axis):
        return None
    for sliced, start, step in zip(axes, starts, steps, strict=False):
        if sliced % len(source) == axis and step == 1:
            first = min(max(start + source[axis] if start < 0 else start, 0), source[axis])
            row = ir.tensor(op.inputs[0]).nbytes // source[axis]
            return first * row if first + shape[axis] <= source[axis] else None
    return None


def concat_part_positions(ir: IRGraph, op: Operator, part: str) -> list[int]:
    """Byte positions of ``part`` in the output of ``op``, if it is a concat part of it
    (several if the Concat reads it several times)."""
    if op.op_type != "Concat" or not op.outputs or part not in op.inputs:
        return []
    shape = ir.tensor(op.outputs[0]).shape
    axis = operator_axis(op, len(shape)) if shape else None
    if axis is None or not _contiguous(shape, axis):
        return []
    positions, position = [], 0
    for name in op.inputs:
        if name == part:
            positions.append(position)
        position += ir.tensor(name).nbytes if name else 0
    return positions


def alias_positions(ir: IRGraph, tensors: list[Tensor]) -> dict[str, int]:
    """Byte position of each of ``tensors`` inside the root of its alias group: the sum of
    the slice views' and concat parts' positions along its ``alias_of`` chain (views and
    in-place writes lie at their source's position)."""
    positions: dict[str, int] = {}

    def place(name: str) -> None:
        chain = []
        while name not in positions:
            source = ir.tensor(name).alias_of
            if source is None:
                positions[name] = 0
                break
            chain.append((name, source))
            name = source
        for member, source in reversed(chain):
            positions[member] = positions[source] + _position_in(ir, member, source)

    for tensor in tensors:
        place(tensor.name)
    return {t.name: positions[t.name] for t in tensors}


def _position_in(ir: IRGraph, member: str, source: str) -> int:
    """Byte position of ``member`` in the tensor it aliases: a slice view's range, a
    concat part's slice, 0 for a view or an in-place write."""
    made = ir.producer(member) if ir.has_producer(member) else None
    if made is not None and made.inputs[:1] == [source]:
        position = slice_view_position(ir, made, member)
        if position is not None:
            return position
    whole = ir.producer(source) if ir.has_producer(source) else None
    inside = concat_part_positions(ir, whole, member) if whole is not None else []
    return inside[0] if inside else 0
