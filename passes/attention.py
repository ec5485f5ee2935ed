"""``attention``: compute attention in chunks of query rows, so one score block is alive at a time.

Reads: operators, shapes (before ``schedule``). Writes: the graph. Each attention
found is replaced by ``chunks`` copies working on a slice of the query rows, and a
``Concat`` that writes the original output; every new operator is ``inserted``.

Matched, as exporters write it (torch dynamo and TorchScript, transformers' eager
path)::

    scores = MatMul(Q, Kt)            Q [..., S, D], Kt [..., D, T]
    scores = Mul|Div(scores, scale)   optional, any number of elementwise steps:
    scores = Add|Sub(scores, mask)      Mul, Div, Add, Sub, Where, whose other
    scores = Where(cond, scores, x)     inputs broadcast against [..., S, T]
    probs  = Softmax(scores, axis=-1)
    out    = MatMul(probs, V)         V [..., T, Dv]

where every intermediate value has this one reader. Rewritten (``mode=rows``,
exact: each row of scores depends only on its query row)::

    Q_i = Split(Q, sizes, axis=-2)                     (and every side input whose
    out_i = MatMul(Softmax(chain(MatMul(Q_i, Kt))), V)    axis -2 has S rows, e.g. a
    out = Concat(out_0, ..., out_N-1, axis=-2)             causal mask, split alike)

ONNX's fused ``Attention`` operator (opset 23) is matched too, when it reads no past
keys or values, is not ``is_causal`` and only its output ``Y`` is used: ``rows``
replaces it by one ``Attention`` per block of query rows (Q and a mask with a row
axis split alike; 3-D and 4-D layouts) and a ``Concat``; ``online`` decomposes it
into ``MatMul(Q, Kt) * scale (+ mask, or Where for a bool mask) -> Softmax ->
MatMul(V)`` and chunks that by keys (float32 ``[B, H, S, E]`` with as many key
heads as query heads, no ``softcap``; otherwise it stays fused, with a note). Its
score block is the kernel's workspace, not a tensor of the plan: ``rows`` bounds it
per call, ``online`` makes the blocks planned tensors.

Refused (left as they are): a Softmax over another axis, values read twice, side
inputs that do not broadcast, opsets below 13 (no ``split`` input), fewer than two
query rows. ``chunks=auto`` picks
the fewest chunks whose score block fits ``budget`` bytes (default: the capacity of
the target's L2 tier; the largest tier below memory when there is no L2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from tierplan.compiler.ir import IRGraph, Operator, Tensor
from tierplan.compiler.pass_manager import (
    GRAPH_FACTS,
    Bounds,
    Pass,
    PassContext,
    PassResult,
    register_pass,
)
from tierplan.compiler.rewriting import Chunks, Emitter, resized, split_sizes
from tierplan.compiler.target import Target

_CHAIN_OPS = {"Mul": (0, 1), "Div": (0,), "Add": (0, 1), "Sub": (0,), "Where": (1, 2)}
"""Elementwise steps between the scores and Softmax, and the slots the scores may take."""

SCORES = "scores"
"""Label (in the name) of every tensor that holds a block of attention scores."""


@dataclass(frozen=True, slots=True)
class Attention:
    """One matched attention: its operators from the scores to the output."""

    scores: Operator
    chain: tuple[Operator, ...]
    softmax: Operator
    output: Operator
    probabilities: Tensor

    @property
    def rows(self) -> int:
        """Query rows ``S``: axis -2 of the scores."""
        return self.probabilities.shape[-2]

    @property
    def score_bytes(self) -> int:
        """Bytes of one score block over all rows (the scores, the probabilities)."""
        return self.probabilities.nbytes


def _only_reader(ir: IRGraph, tensor: str) -> Operator | None:
    readers = ir.consumers(tensor)
    graph_output = ir.tensor(tensor).graph_output
    if len(readers) != 1 or graph_output or readers[0].inputs.count(tensor) != 1:
        return None
    return readers[0]


def _broadcasts(shape: tuple[int, ...], full: tuple[int, ...]) -> bool:
    if len(shape) > len(full):
        return False
    return all(d in (1, f) for d, f in zip(reversed(shape), reversed(full), strict=False))


def find_attention(ir: IRGraph, softmax: Operator) -> Attention | None:
    """The attention whose Softmax is ``softmax``, or None when the pattern does not hold."""
    probs = ir.tensor(softmax.outputs[0])
    axis = softmax.attributes.get("axis", -1)
    rank = len(probs.shape)
    if ir.model.opset < 13 or rank < 2 or not isinstance(axis, int) or axis % rank != rank - 1:
        return None
    output = _only_reader(ir, probs.name)
    if output is None or output.op_type != "MatMul" or output.inputs[0] != probs.name:
        return None
    chain: list[Operator] = []
    value = softmax.inputs[0]
    while ir.has_producer(value):
        producer = ir.producer(value)
        if _only_reader(ir, value) is None:
            return None
        if producer.op_type == "MatMul":
            scores = producer
            break
        slots = _CHAIN_OPS.get(producer.op_type)
        main = [s for s in slots or () if ir.tensor(producer.inputs[s]).shape == probs.shape]
        if not main or producer.domain:
            return None
        sides = [name for slot, name in enumerate(producer.inputs) if slot != main[0] and name]
        if not all(_broadcasts(ir.tensor(name).shape, probs.shape) for name in sides):
            return None
        chain.insert(0, producer)
        value = producer.inputs[main[0]]
    else:
        return None
    query = ir.tensor(scores.inputs[0])
    if len(query.shape) < 2 or query.shape[-2] != probs.shape[-2] or probs.shape[-2] < 2:
        return None
    return Attention(scores, tuple(chain), softmax, output, probs)


def _replace(ir: IRGraph, attention: Attention) -> Tensor:
    """Remove the matched operators and the values between them; return the output."""
    steps = [attention.scores, *attention.chain, attention.softmax, attention.output]
    for op in steps:
        ir.remove_operator(op.name)
    for op in steps[:-1]:
        ir.remove_tensor(op.outputs[0])
    return ir.tensor(attention.output.outputs[0])


def _split_sides(
    emit: Emitter,
    attention: Attention,
    sizes: list[int],
    sizes_name: str,
    axis_from_end: int,
) -> dict[str, list[str]]:
    """Split the chain's side inputs that span the split axis (a mask over rows or keys)."""
    full = attention.probabilities.shape[axis_from_end]
    internal = {op.outputs[0] for op in (attention.scores, *attention.chain)}
    parts: dict[str, list[str]] = {}
    for op in attention.chain:
        for name in op.inputs:
            if not name or name in parts or name in internal:
                continue
            side = emit.ir.tensor(name)
            if len(side.shape) >= -axis_from_end and side.shape[axis_from_end] == full > 1:
                axis = len(side.shape) + axis_from_end
                parts[name] = emit.split(side, sizes, sizes_name, axis)
    return parts


def _chain(
    emit: Emitter,
    attention: Attention,
    scores: str,
    sides: dict[str, list[str]],
    index: int,
    shape: tuple[int, ...],
) -> str:
    """The scale/mask steps applied to one block of scores."""
    value = scores
    for op in attention.chain:
        inputs = [sides[name][index] if name in sides else name for name in op.inputs]
        previous = op.inputs.index(
            (attention.scores, *attention.chain)[attention.chain.index(op)].outputs[0]
        )
        inputs[previous] = value
        value = emit.op(
            op.op_type, inputs, attention.probabilities, shape, dict(op.attributes), label=SCORES
        )
    return value


def chunk_rows(ir: IRGraph, attention: Attention, chunks: int) -> None:
    """Replace ``attention`` by ``chunks`` blocks of query rows and a Concat (exact)."""
    emit = Emitter(ir, attention.softmax.name)
    sizes = split_sizes(attention.rows, chunks)
    sizes_name = emit.ints(sizes)
    query = ir.tensor(attention.scores.inputs[0])
    queries = emit.split(query, sizes, sizes_name, len(query.shape) - 2)
    sides = _split_sides(emit, attention, sizes, sizes_name, -2)
    probabilities = attention.probabilities
    final = _replace(ir, attention)
    keys, values = attention.scores.inputs[1], attention.output.inputs[1]
    pieces = []
    for index, rows in enumerate(sizes):
        shape = resized(probabilities.shape, len(probabilities.shape) - 2, rows)
        scores = emit.op("MatMul", [queries[index], keys], probabilities, shape, label=SCORES)
        scores = _chain(emit, attention, scores, sides, index, shape)
        attributes = dict(attention.softmax.attributes)
        probs = emit.op("Softmax", [scores], probabilities, shape, attributes, label=SCORES)
        out_shape = resized(final.shape, len(final.shape) - 2, rows)
        pieces.append(emit.op("MatMul", [probs, values], final, out_shape))
    emit.op("Concat", pieces, final, final.shape, {"axis": len(final.shape) - 2}, out=final.name)


def chunk_keys_online(ir: IRGraph, attention: Attention, blocks: int) -> None:
    """Replace ``attention`` by a pass over ``blocks`` blocks of keys with a running
    max and sum (flash-style; exact up to floating-point rounding)."""
    emit = Emitter(ir, attention.softmax.name)
    probabilities = attention.probabilities
    rank = len(probabilities.shape)
    sizes = split_sizes(probabilities.shape[-1], blocks)
    sizes_name = emit.ints(sizes)
    keys = ir.tensor(attention.scores.inputs[1])
    values = ir.tensor(attention.output.inputs[1])
    key_parts = emit.split(keys, sizes, sizes_name, len(keys.shape) - 1)
    value_parts = emit.split(values, sizes, sizes_name, len(values.shape) - 2)
    sides = _split_sides(emit, attention, sizes, sizes_name, -1)
    query = attention.scores.inputs[0]
    final = _replace(ir, attention)
    stat = resized(probabilities.shape, rank - 1, 1)
    reduce_max, reduce_sum = _reductions(emit, ir.model.opset)
    total = out = peak = ""
    for index, size in enumerate(sizes):
        shape = resized(probabilities.shape, rank - 1, size)
        scores = emit.op("MatMul", [query, key_parts[index]], probabilities, shape, label=SCORES)
        scores = _chain(emit, attention, scores, sides, index, shape)
        block_peak = reduce_max(scores, stat)
        new_peak = (
            block_peak if not peak else emit.op("Max", [peak, block_peak], probabilities, stat)
        )
        shifted = emit.op("Sub", [scores, new_peak], probabilities, shape, label=SCORES)
        weights = emit.op("Exp", [shifted], probabilities, shape, label=SCORES)
        block_total = reduce_sum(weights, stat)
        block_out = emit.op("MatMul", [weights, value_parts[index]], final, final.shape)
        if not peak:
            total, out = block_total, block_out
        else:
            drop = emit.op("Sub", [peak, new_peak], probabilities, stat)
            rescale = emit.op("Exp", [drop], probabilities, stat)
            kept = emit.op("Mul", [total, rescale], probabilities, stat)
            total = emit.op("Add", [kept, block_total], probabilities, stat)
            kept_out = emit.op("Mul", [out, rescale], final, final.shape)
            out = emit.op("Add", [kept_out, block_out], final, final.shape)
        peak = new_peak
    emit.op("Div", [out, total], final, final.shape, out=final.name)


def _reductions(
    emit: Emitter, opset: int
) -> tuple[Callable[[str, tuple[int, ...]], str], Callable[[str, tuple[int, ...]], str]]:
    """ReduceMax and ReduceSum over the last axis, keeping it, as this opset spells them."""
    axes = emit.ints([-1])

    def reduce(op_type: str, axes_as_input: bool) -> Callable[[str, tuple[int, ...]], str]:
        def apply(value: str, shape: tuple[int, ...]) -> str:
            like = emit.ir.tensor(value)
            if axes_as_input:
                return emit.op(op_type, [value, axes], like, shape, {"keepdims": 1})
            return emit.op(op_type, [value], like, shape, {"keepdims": 1, "axes": [-1]})

        return apply

    return reduce("ReduceMax", opset >= 18), reduce("ReduceSum", True)


@dataclass(frozen=True, slots=True)
class FusedAttention:
    """One ONNX ``Attention`` operator (opset 23) without past keys, values or a causal
    flag, of which only the main output is read."""

    op: Operator
    rows: int
    keys: int
    score_bytes: int
    output: Tensor


def find_fused_attention(ir: IRGraph, op: Operator) -> FusedAttention | None:
    """``op`` as a chunkable fused ``Attention``, or None (refused: past keys or values,
    ``is_causal``, extra outputs, a mask that does not broadcast, fewer than two rows)."""
    if op.op_type != "Attention" or op.domain not in ("", "ai.onnx") or ir.model.opset < 23:
        return None
    extra_inputs = [name for name in op.inputs[4:] if name]
    if extra_inputs or any(op.outputs[1:]) or op.attributes.get("is_causal", 0):
        return None
    query, keys, output = (ir.tensor(name) for name in (op.inputs[0], op.inputs[1], op.outputs[0]))
    rank = len(query.shape)
    heads = query.shape[1] if rank == 4 else op.attributes.get("q_num_heads", 0)
    if rank not in (3, 4) or not isinstance(heads, int) or heads < 1:
        return None
    rows, key_count = query.shape[rank - 2], keys.shape[rank - 2]
    full = (query.shape[0], heads, rows, key_count)
    mask = op.inputs[3] if len(op.inputs) > 3 else ""
    if rows < 2 or (mask and not _broadcasts(ir.tensor(mask).shape, full)):
        return None
    itemsize = query.nbytes // max(1, math.prod(query.shape))
    return FusedAttention(op, rows, key_count, math.prod(full) * itemsize, output)


def chunk_fused_rows(ir: IRGraph, fused: FusedAttention, chunks: int) -> None:
    """Replace a fused ``Attention`` by one per block of query rows and a Concat (exact)."""
    op, final = fused.op, fused.output
    emit = Emitter(ir, op.name)
    sizes = split_sizes(fused.rows, chunks)
    sizes_name = emit.ints(sizes)
    axis = len(final.shape) - 2
    queries = emit.split(ir.tensor(op.inputs[0]), sizes, sizes_name, axis)
    mask = ir.tensor(op.inputs[3]) if len(op.inputs) > 3 and op.inputs[3] else None
    masks: list[str] = [mask.name] * chunks if mask else [""] * chunks
    if mask and len(mask.shape) >= 2 and mask.shape[-2] == fused.rows:
        masks = emit.split(mask, sizes, sizes_name, len(mask.shape) - 2)
    ir.remove_operator(op.name)
    pieces = []
    for index, rows in enumerate(sizes):
        inputs = [queries[index], op.inputs[1], op.inputs[2], *([masks[index]] if mask else [])]
        shape = resized(final.shape, axis, rows)
        pieces.append(emit.op("Attention", inputs, final, shape, dict(op.attributes)))
    emit.op("Concat", pieces, final, final.shape, {"axis": axis}, out=final.name)


def decompose_fused(ir: IRGraph, fused: FusedAttention) -> Attention | None:
    """Replace a fused ``Attention`` by ``MatMul(Q, Kt) * scale (+ mask) -> Softmax ->
    MatMul(V)`` and return that attention, or None (left fused) unless Q is a float32
    ``[B, H, S, E]`` with as many key heads and no ``softcap``."""
    op, final = fused.op, fused.output
    query, keys = ir.tensor(op.inputs[0]), ir.tensor(op.inputs[1])
    if len(query.shape) != 4 or query.dtype != "float32" or keys.shape[1] != query.shape[1]:
        return None
    if op.attributes.get("softcap", 0.0):
        return None
    batch, heads, rows, width = query.shape
    given = op.attributes.get("scale")
    scale = float(given) if isinstance(given, int | float) and given else 1.0 / math.sqrt(width)
    emit = Emitter(ir, op.name)
    shape = (batch, heads, rows, fused.keys)
    ir.remove_operator(op.name)
    transposed = emit.op(
        "Transpose", [keys.name], keys, (batch, heads, width, fused.keys), {"perm": [0, 1, 3, 2]}
    )
    scores = emit.op("MatMul", [query.name, transposed], query, shape, label=SCORES)
    scores = emit.op("Mul", [scores, emit.floats(scale)], query, shape, label=SCORES)
    mask = ir.tensor(op.inputs[3]) if len(op.inputs) > 3 and op.inputs[3] else None
    if mask is not None and mask.dtype == "bool":
        lowest = emit.floats(float(np.finfo(np.float32).min))
        scores = emit.op("Where", [mask.name, scores, lowest], query, shape, label=SCORES)
    elif mask is not None:
        scores = emit.op("Add", [scores, mask.name], query, shape, label=SCORES)
    probs = emit.op("Softmax", [scores], query, shape, {"axis": -1}, label=SCORES)
    emit.op("MatMul", [probs, op.inputs[2]], final, final.shape, out=final.name)
    return find_attention(ir, ir.producer(probs))


def default_budget(target: Target) -> int:
    """Bytes one chunk's scores may take: L2's capacity, or the largest tier below memory."""
    named = [tier for tier in target.tiers if tier.name == "L2"]
    below = list(target.tiers[:-1]) or list(target.tiers)
    return (named or [max(below, key=lambda tier: tier.capacity)])[0].usable


@register_pass
@dataclass(frozen=True)
class ChunkAttention(Pass):
    """Compute attention in row chunks so one chunk's score block is alive at a time."""

    name = "attention"
    invalidates = GRAPH_FACTS

    chunks: Chunks = "auto"
    mode: Literal["rows", "online"] = "rows"
    budget: Annotated[int, Bounds(0)] = 0  # bytes of a score block; 0: default_budget

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        budget = self.budget or default_budget(context.target)
        found = [
            a
            for op in list(ir.operators())
            if op.op_type == "Softmax" and (a := find_attention(ir, op)) is not None
        ]
        notes, refused = self._fused(ir, budget)
        for attention in found:
            chunks = self._chunks(attention, budget)
            if chunks > 1:
                rewrite = chunk_rows if self.mode == "rows" else chunk_keys_online
                rewrite(ir, attention, chunks)
                axis = "query rows" if self.mode == "rows" else "keys"
                notes.append(
                    f"{attention.softmax.name}: {chunks} blocks of {axis}, score block "
                    f"{attention.score_bytes // chunks} of {attention.score_bytes} bytes"
                )
        summary = f"{len(notes)} attentions chunked"
        return PassResult(changed=bool(notes), notes=[summary, *notes, *refused])

    def _fused(self, ir: IRGraph, budget: int) -> tuple[list[str], list[str]]:
        """Chunk ONNX's fused ``Attention`` operators: a note per rewrite, and per refusal."""
        notes, refused = [], []
        for op in [op for op in ir.operators() if op.op_type == "Attention"]:
            fused = find_fused_attention(ir, op)
            if fused is None:
                continue
            wanted = (
                math.ceil(fused.score_bytes / max(1, budget))
                if self.chunks == "auto"
                else int(self.chunks)
            )
            chunks = min(wanted, fused.rows if self.mode == "rows" else fused.keys)
            if chunks < 2:
                continue
            if self.mode == "rows":
                chunk_fused_rows(ir, fused, chunks)
            else:
                decomposed = decompose_fused(ir, fused)
                if decomposed is None:
                    refused.append(f"{op.name}: left fused (online needs 4-D float32, equal heads)")
                    continue
                chunk_keys_online(ir, decomposed, chunks)
            notes.append(
                f"{op.name} (fused Attention): {chunks} blocks of "
                f"{'query rows' if self.mode == 'rows' else 'keys'}, score block "
                f"{fused.score_bytes // chunks} of {fused.score_bytes} bytes"
            )
        return notes, refused

    def _chunks(self, attention: Attention, budget: int) -> int:
        wanted = (
            math.ceil(attention.score_bytes / max(1, budget))
            if self.chunks == "auto"
            else int(self.chunks)
        )
        return min(wanted, attention.probabilities.shape[-2 if self.mode == "rows" else -1])
