"""Matrix multiplication (MatMul, batched MatMul, Gemm) as an ``m, n, k`` loop nest.

``Y[b, m, n] = sum_k A[b, m, k] * B[b, k, n]``. Batch dimensions that only A has
are folded into ``m`` (a weight matrix shared by the batch is one larger GEMM);
otherwise the batch is an outer loop. All six orders of ``m, n, k`` are tried:
``k`` innermost keeps the output tile stationary (output-stationary), ``m`` or
``n`` innermost keeps a weight or input panel stationary. The traffic is judged
against the Hong-Kung bound :func:`hong_kung_bound`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tierplan.compiler.ir import IRGraph, Operator
from tierplan.compiler.tiling.nest import Axis, Dim, LoopNest, Operand, orders_of
from tierplan.compiler.tiling.operands import element_bytes, inputs_of, outputs_of

OP_TYPES = frozenset({"MatMul", "Gemm"})


@dataclass(frozen=True, slots=True)
class GemmShape:
    """Sizes of one (batched) matrix product; ``a_batched``/``b_batched``: who varies with b."""

    batch: int
    m: int
    n: int
    k: int
    a_batched: bool
    b_batched: bool


def gemm_shape(ir: IRGraph, op: Operator) -> GemmShape | None:
    """The product's sizes, or ``None`` for shapes this tiler does not handle."""
    tensors = inputs_of(ir, op)
    if len(tensors) < 2:
        return None
    a, b = tensors[0].shape, tensors[1].shape
    if op.op_type == "Gemm":
        if len(a) != 2 or len(b) != 2:
            return None
        m, k = (a[1], a[0]) if op.attributes.get("transA") else a
        k2, n = (b[1], b[0]) if op.attributes.get("transB") else b
        return GemmShape(1, m, n, k, False, False) if k == k2 else None
    if not a or not b:
        return None
    a2 = a if len(a) >= 2 else (1, a[0])
    b2 = b if len(b) >= 2 else (b[0], 1)
    if a2[-1] != b2[-2]:
        return None
    a_batch, b_batch = math.prod(a2[:-2]), math.prod(b2[:-2])
    batch = max(a_batch, b_batch)
    if b_batch == 1:  # B is shared by the batch: one taller product
        return GemmShape(1, a_batch * a2[-2], b2[-1], a2[-1], False, False)
    return GemmShape(batch, a2[-2], b2[-1], a2[-1], a_batch > 1, True)


def hong_kung_bound(ir: IRGraph, op: Operator, l1_bytes: int) -> float | None:
    """``2 * b*M*N*K * e / sqrt(S / e)``: least bytes any schedule moves through ``S`` bytes."""
    shape = gemm_shape(ir, op)
    if shape is None:
        return None
    e = element_bytes(inputs_of(ir, op)[0])
    return 2 * shape.batch * shape.m * shape.n * shape.k * e / math.sqrt(l1_bytes / e)


def gemm_nest(ir: IRGraph, op: Operator) -> LoopNest | None:
    """The loop nest of a MatMul or Gemm."""
    shape = gemm_shape(ir, op)
    if shape is None:
        return None
    tensors = inputs_of(ir, op)
    a, b, y = tensors[0], tensors[1], outputs_of(ir, op)[0]
    batch = (Dim("b", shape.batch),) if shape.batch > 1 else ()
    a_batch = batch if shape.a_batched else ()
    b_batch = batch if shape.b_batched else ()
    operands = [
        Operand("A", a.name, (*a_batch, Dim("m", shape.m), Dim("k", shape.k)), element_bytes(a)),
        Operand("B", b.name, (*b_batch, Dim("k", shape.k), Dim("n", shape.n)), element_bytes(b)),
    ]
    if len(tensors) > 2:  # Gemm's bias C, broadcast to (M, N)
        c = tensors[2]
        dims = [Dim(None, 1), Dim(None, 1), *(Dim(None, s) for s in c.shape)][-2:]
        if c.shape and c.shape[-1] == shape.n and shape.n > 1:
            dims[1] = Dim("n", shape.n)
        if len(c.shape) == 2 and c.shape[0] == shape.m and shape.m > 1:
            dims[0] = Dim("m", shape.m)
        operands.append(Operand("C", c.name, tuple(dims), element_bytes(c)))
    operands.append(
        Operand("Y", y.name, (*batch, Dim("m", shape.m), Dim("n", shape.n)), element_bytes(y), True)
    )
    axes = (Axis("b", shape.batch), Axis("m", shape.m), Axis("n", shape.n), Axis("k", shape.k))
    return LoopNest(
        op.name,
        axes,
        tuple(operands),
        orders_of([("m",), ("n",), ("k",)], outer=("b",)),
    )
