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

Refused (left as they are): a Softmax over another axis, values read twice, side
inputs that do not broadcast, opsets below 13 (no ``split`` input), ONNX's fused
``Attention`` operator (not yet), fewer than two query rows. ``chunks=auto`` picks
the fewest chunks whose score block fits ``budget`` bytes (default: the capacity of
the target's L2 tier; the largest tier below memory when there is no L2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tierplan.compiler.errors import PipelineError
from tierplan.compiler.ir import IRGraph, Operator, Tensor
from tierplan.compiler.pass_manager import Pass, PassContext, PassResult, register_pass
from tierplan.compiler.target import Target

_CHAIN_OPS = {"Mul": (0, 1), "Div": (0,), "Add": (0, 1), "Sub": (0,), "Where": (1, 2)}
"""Elementwise steps between the scores and Softmax, and the slots the scores may take."""

_FACTS = frozenset(
    {"schedule", "liveness", "aliasing", "tiling", "partition", "tiers", "placement", "evaluation"}
)


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


def _sizes(rows: int, chunks: int) -> list[int]:
    base, extra = divmod(rows, chunks)
    return [base + 1 if index < extra else base for index in range(chunks)]


def _sliced(tensor: Tensor, rows: int) -> tuple[tuple[int, ...], int]:
    """Shape and bytes of ``tensor`` with ``rows`` rows on axis -2."""
    shape = (*tensor.shape[:-2], rows, tensor.shape[-1])
    return shape, tensor.nbytes // tensor.shape[-2] * rows


def _split(ir: IRGraph, tensor: Tensor, sizes: list[int], sizes_name: str, at: str) -> list[str]:
    parts = []
    for index, rows in enumerate(sizes):
        shape, nbytes = _sliced(tensor, rows)
        parts.append(ir.add_value(f"{tensor.name}/rows{index}", tensor.dtype, shape, nbytes).name)
    ir.add_operator(
        Operator(
            ir.unique_name(f"{at}/split_{tensor.name}"),
            "Split",
            inputs=[tensor.name, sizes_name],
            outputs=parts,
            attributes={"axis": len(tensor.shape) - 2},
        )
    )
    return parts


def chunk_rows(ir: IRGraph, attention: Attention, chunks: int) -> None:
    """Replace ``attention`` by ``chunks`` row blocks and a Concat (see the module docstring)."""
    rows = attention.rows
    sizes = _sizes(rows, chunks)
    at = attention.softmax.name
    sizes_tensor = ir.add_value(f"{at}/chunk_rows", "int64", (chunks,), 8 * chunks)
    ir.add_operator(
        Operator(
            ir.unique_name(f"{at}/chunk_rows"),
            "Constant",
            outputs=[sizes_tensor.name],
            attributes={"value_ints": sizes},
        )
    )
    steps = [attention.scores, *attention.chain, attention.softmax, attention.output]
    final = ir.tensor(attention.output.outputs[0])
    old_values = [op.outputs[0] for op in steps[:-1]]
    query = ir.tensor(attention.scores.inputs[0])
    split_of = {query.name: _split(ir, query, sizes, sizes_tensor.name, at)}
    side_split: set[str] = set()
    for op in attention.chain:
        for name in op.inputs:
            if not name or name in side_split or name in old_values:
                continue
            side = ir.tensor(name)
            if len(side.shape) >= 2 and side.shape[-2] == rows:
                side_split.add(name)
                if name not in split_of:
                    split_of[name] = _split(ir, side, sizes, sizes_tensor.name, at)
    for op in steps:
        ir.remove_operator(op.name)
    pieces = []
    for index, _ in enumerate(sizes):
        value = ""
        for op in steps:
            made = ir.tensor(op.outputs[0])
            inputs = list(op.inputs)
            if value:  # the running value, and the chain's side inputs split by rows
                previous = op.inputs.index(old_values[steps.index(op) - 1])
                if op in attention.chain:
                    inputs = [split_of[n][index] if n in side_split else n for n in inputs]
                inputs[previous] = value
            else:  # the scores: this chunk's query rows against all keys
                inputs[0] = split_of[query.name][index]
            shape, nbytes = _sliced(made, sizes[index])
            piece = ir.add_value(f"{made.name}/rows{index}", made.dtype, shape, nbytes)
            ir.add_operator(
                Operator(
                    ir.unique_name(f"{op.name}/rows{index}"),
                    op.op_type,
                    domain=op.domain,
                    inputs=inputs,
                    outputs=[piece.name],
                    attributes=dict(op.attributes),
                )
            )
            value = piece.name
        pieces.append(value)
    for name in old_values:
        ir.remove_tensor(name)
    ir.add_operator(
        Operator(
            ir.unique_name(f"{at}/concat_rows"),
            "Concat",
            inputs=pieces,
            outputs=[final.name],
            attributes={"axis": len(final.shape) - 2},
        )
    )


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
    invalidates = _FACTS

    chunks: str = "auto"
    mode: str = "rows"
    budget: int = 0

    def __post_init__(self) -> None:
        if self.mode != "rows":
            raise PipelineError(f"attention{{mode={self.mode}}}: only 'rows' is implemented")
        if self.chunks != "auto" and not (self.chunks.isdigit() and int(self.chunks) > 0):
            raise PipelineError(f"attention{{chunks={self.chunks}}}: expected 'auto' or a count")
        if self.budget < 0:
            raise PipelineError(f"attention{{budget={self.budget}}}: expected a size in bytes")

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        budget = self.budget or default_budget(context.target)
        found = [
            a
            for op in list(ir.operators())
            if op.op_type == "Softmax" and (a := find_attention(ir, op)) is not None
        ]
        notes = []
        for attention in found:
            chunks = self._chunks(attention, budget)
            if chunks > 1:
                chunk_rows(ir, attention, chunks)
                notes.append(
                    f"{attention.softmax.name}: {chunks} chunks of "
                    f"{math.ceil(attention.rows / chunks)} rows, score block "
                    f"{attention.score_bytes // chunks} of {attention.score_bytes} bytes"
                )
        return PassResult(changed=bool(notes), notes=[f"{len(notes)} attentions chunked", *notes])

    def _chunks(self, attention: Attention, budget: int) -> int:
        wanted = (
            math.ceil(attention.score_bytes / max(1, budget))
            if self.chunks == "auto"
            else int(self.chunks)
        )
        return min(wanted, attention.rows)
