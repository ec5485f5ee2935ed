"""Per-operator tilers: how an operator too large for L1 is cut into tiles that fit.

Each family module turns an operator into a :class:`~tierplan.compiler.tiling.nest.LoopNest`
(its axes, the tile box each operand touches, the loop orders worth trying);
:func:`choose_tiling` searches the nest for the least-traffic tiling whose
double-buffered tiles fit the L1 budget, or raises :class:`TilingError` naming
what would have to be split; :func:`element_floor` is the least any operator
needs (one element of each operand, double-buffered). Families: :mod:`.gemm`
(MatMul, Gemm), :mod:`.conv` (Conv, grouped, depthwise), :mod:`.pooling`,
:mod:`.elementwise`, :mod:`.reduction` (Softmax, normalizations, reductions, global
pooling), :mod:`.movement`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

from tierplan.compiler.errors import PassFailure
from tierplan.compiler.ir import IRGraph, Operator
from tierplan.compiler.tiling import conv, elementwise, gemm, movement, pooling, reduction
from tierplan.compiler.tiling.nest import LoopNest, Tiling, minimal_tile_bytes, search
from tierplan.compiler.tiling.operands import element_bytes

NestBuilder = Callable[[IRGraph, Operator], LoopNest | None]

BUILDERS: dict[str, NestBuilder] = {
    **dict.fromkeys(gemm.OP_TYPES, gemm.gemm_nest),
    **dict.fromkeys(conv.OP_TYPES, conv.conv_nest),
    **dict.fromkeys(pooling.OP_TYPES, pooling.pooling_nest),
    **dict.fromkeys(elementwise.OP_TYPES, elementwise.elementwise_nest),
    **dict.fromkeys(reduction.OP_TYPES, reduction.reduction_nest),
    **dict.fromkeys(movement.OP_TYPES, movement.movement_nest),
}


class TilingError(PassFailure):
    """An operator cannot be tiled legally to fit L1."""


def loop_nest(ir: IRGraph, op: Operator) -> LoopNest | None:
    """The operator's loop nest, or ``None`` when no tiler handles it (type or shapes)."""
    builder = BUILDERS.get(op.op_type)
    if builder is None or op.domain not in ("", "ai.onnx") or not [n for n in op.outputs if n]:
        return None
    if not [n for n in op.inputs if n]:
        return None
    return builder(ir, op)


def untiled_bytes(nest: LoopNest) -> int:
    """Bytes the operator touches at once when it is not tiled (every operand whole)."""
    return sum(
        math.ceil(math.prod(d.full for d in operand.dims) * operand.element_bytes)
        for operand in nest.operands
        if not operand.local
    )


def element_floor(ir: IRGraph, op: Operator, alignment: int) -> int:
    """L1 bytes of one element of each operand, double-buffered: no tiling needs less."""
    names = dict.fromkeys(n for n in [*op.read_tensors(), *op.outputs] if n)
    sizes = [math.ceil(element_bytes(ir.tensor(n))) for n in names]
    return sum(2 * -(-size // alignment) * alignment for size in sizes)


@functools.lru_cache(maxsize=4096)
def _search_anonymous(nest: LoopNest, budget: int, alignment: int) -> Tiling | None:
    return search(nest, budget, alignment)


def choose_tiling(nest: LoopNest, budget: int, alignment: int) -> Tiling:
    """The least-traffic tiling of ``nest`` within ``budget``; traffic keyed by tensor name.

    Nests that differ only in names share one search (a model repeats its layers).
    """
    anonymous = dataclasses.replace(
        nest,
        op="",
        operands=tuple(dataclasses.replace(o, tensor=o.label) for o in nest.operands),
    )
    found = _search_anonymous(anonymous, budget, alignment)
    if found is None:
        raise TilingError(_diagnostic(nest, budget, alignment))
    tensor_of = {o.label: o.tensor for o in nest.operands if not o.local}
    traffic: dict[str, int] = {}
    for label, moved in found.traffic.items():
        if label in tensor_of:
            traffic[tensor_of[label]] = traffic.get(tensor_of[label], 0) + moved
    return dataclasses.replace(found, traffic=traffic)


def _diagnostic(nest: LoopNest, budget: int, alignment: int) -> str:
    floor = minimal_tile_bytes(nest, alignment)
    whole = [f"{a.name} (size {a.size})" for a in nest.axes if a.whole and a.size > 1]
    reason = (
        f"axis {', '.join(whole)} would have to be split, which needs the operator rewritten"
        if whole
        else "even one-element tiles are too large (its window or fixed dimensions would have to be split)"
    )
    return (
        f"tiling: operator {nest.op!r} does not fit L1: its smallest double-buffered tile "
        f"needs {floor} bytes, the L1 budget is {budget}; {reason}"
    )


__all__ = [
    "BUILDERS",
    "TilingError",
    "choose_tiling",
    "element_floor",
    "loop_nest",
    "untiled_bytes",
]
