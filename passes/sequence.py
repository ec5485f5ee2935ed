"""``sequence``: run a transformer in chunks of sequence positions, so that only the
keys and values (and what leaves the chunked part) are ever whole.

Reads: operators, shapes (before ``schedule``). Writes: the graph. Every operator
whose output rows along the sequence axis depend only on the same rows of its inputs
is replaced by ``chunks`` copies, each computing a block of rows; values that enter
that part of the graph are split (``Split``), values that leave it, or that an
operator needs whole (the keys and values of attention: ``MatMul``'s right operand),
are concatenated back under their own name (``Concat``). Every new operator is
``inserted``. The result is exact: each copy computes the same numbers on fewer rows.

The sequence axis is found from the attentions (:func:`~tierplan.passes.attention.
find_attention`): the query rows (axis -2 of ``Q``), followed through the graph
backward and forward as long as an operator is row-wise. Row-wise operators:

- elementwise operators (unary, and broadcasting binary ones and ``Where``: an input
  whose axis is missing or 1 is read whole by every copy);
- ``LayerNormalization``, ``Softmax``, ``LogSoftmax`` over axes other than the rows;
- ``MatMul`` (the rows of the left operand, or a batch axis of both) and ``Gemm``
  (the rows of ``A``; a bias with rows is split alike);
- ``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze`` that keep the rows one axis
  (its size and the product of the axes before it unchanged; a ``Reshape`` gets a new
  shape constant per copy), ``Transpose``, ``Split`` and ``Concat`` along another
  axis, ``Gather`` (the rows of its indices, or of its data before the gathered axis).

Anything else ends the chunked part (its inputs are concatenated). A value that
elementwise operators compute from constants alone (a causal mask built from index
tables) is computed again next to each reader's block instead of being kept whole:
each block lives only as long as its reader needs it. ``chunks=auto``
picks the fewest chunks whose largest block fits ``budget`` bytes (default: L2's
capacity, as for ``attention``). Graphs without attention are left as they are.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from tierplan.compiler.ir import AttributeValue, IRGraph, Operator, Tensor
from tierplan.compiler.pass_manager import (
    GRAPH_FACTS,
    Bounds,
    Pass,
    PassContext,
    PassResult,
    register_pass,
)
from tierplan.compiler.rewriting import Chunks, Emitter, resized, split_sizes
from tierplan.passes.attention import default_budget, find_attention

_UNARY = frozenset(
    {
        "Abs", "Acos", "Asin", "Atan", "Cast", "Ceil", "Celu", "Clip", "Cos", "Cosh",
        "Elu", "Erf", "Exp", "Floor", "Gelu", "HardSigmoid", "HardSwish", "Identity",
        "IsInf", "IsNaN", "LeakyRelu", "Log", "Mish", "Neg", "Not", "Reciprocal", "Relu",
        "Round", "Selu", "Sigmoid", "Sign", "Sin", "Sinh", "Softplus", "Softsign", "Sqrt",
        "Tan", "Tanh", "ThresholdedRelu",
    }
)  # fmt: skip
"""Elementwise operators of one tensor input (Clip's bounds are scalars, read whole)."""

_BROADCAST = frozenset(
    {
        "Add", "And", "BitwiseAnd", "BitwiseOr", "Div", "Equal", "Greater",
        "GreaterOrEqual", "Less", "LessOrEqual", "Max", "Min", "Mod", "Mul", "Or", "Pow",
        "PRelu", "Sub", "Sum", "Where", "Xor",
    }
)  # fmt: skip
"""Elementwise operators whose inputs broadcast against the output."""

_RESHAPING = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})

InputAxes = list[int | None]
"""Per input slot, the axis along which each copy reads a block of rows (None: whole)."""


def _broadcast_axes(
    shapes: list[tuple[int, ...] | None], out: tuple[int, ...], axis: int
) -> InputAxes | None:
    """The axis of each broadcasting input aligned with output ``axis`` (None for an
    input absent, or constant along it); None when an input varies with another extent."""
    axes: InputAxes = []
    for shape in shapes:
        aligned = axis - (len(out) - len(shape)) if shape is not None else -1
        if shape is None or aligned < 0 or shape[aligned] == 1:
            axes.append(None)
        elif shape[aligned] == out[axis]:
            axes.append(aligned)
        else:
            return None
    return axes


def _same_rows_axis(shape: tuple[int, ...], out: tuple[int, ...], axis: int) -> int | None:
    """The axis of ``shape`` that a reshape to ``out`` keeps as ``out``'s ``axis``."""
    before = math.prod(out[:axis])
    for candidate, size in enumerate(shape):
        if size == out[axis] and math.prod(shape[:candidate]) == before:
            return candidate
    return None


def input_axes(ir: IRGraph, op: Operator, axis: int) -> InputAxes | None:
    """How ``op`` reads its inputs when each copy writes a block of rows of its outputs
    along ``axis``; None when ``op`` is not row-wise along it."""
    if op.domain or op.implicit_inputs or not op.outputs or not op.outputs[0]:
        return None
    if len([name for name in op.outputs if name]) > 1 and op.op_type != "Split":
        return None
    out = ir.tensor(op.outputs[0]).shape
    if not 0 <= axis < len(out) or out[axis] < 2:
        return None
    shapes = [ir.tensor(name).shape if name else None for name in op.inputs]
    rest: InputAxes = [None] * (len(op.inputs) - 1)
    kind = op.op_type
    attribute = op.attributes.get("axis", -1 if kind in ("Softmax", "LogSoftmax") else 0)
    if not isinstance(attribute, int):
        return None
    if kind in _UNARY:
        return [axis, *rest]
    if kind in _BROADCAST:
        return _broadcast_axes(shapes, out, axis)
    if kind in ("LayerNormalization", "Softmax", "LogSoftmax"):
        if kind != "LayerNormalization" and ir.model.opset < 13:
            return None
        first = attribute % len(out)
        beyond = axis >= first if kind == "LayerNormalization" else axis == first
        return None if beyond else [axis, *rest]
    if kind in _RESHAPING:
        found = _same_rows_axis(ir.tensor(op.inputs[0]).shape, out, axis)
        return None if found is None else [found, *rest]
    if kind == "Transpose":
        perm = op.attributes.get("perm", list(reversed(range(len(out)))))
        moved = perm[axis] if isinstance(perm, list) else None
        return [moved, *rest] if isinstance(moved, int) else None
    if kind == "Split":
        return None if attribute % len(out) == axis else [axis, *rest]
    if kind == "Concat":
        return None if attribute % len(out) == axis else [axis] * len(op.inputs)
    present = [ir.tensor(name).shape for name in op.inputs[:2]]
    if kind == "Gather":
        return _gather_axes(present, attribute, axis)
    if kind == "MatMul":
        return _matmul_axes(present, out, axis)
    if kind == "Gemm" and axis == 0:
        bias = _broadcast_axes(shapes[2:], out, axis)
        return None if bias is None else [1 if op.attributes.get("transA") else 0, None, *bias]
    return None


def _gather_axes(shapes: list[tuple[int, ...]], gathered: int, axis: int) -> InputAxes:
    data, indices = shapes[0], shapes[1]
    gathered %= len(data)
    if gathered <= axis < gathered + len(indices):
        return [None, axis - gathered]
    if axis < gathered:
        return [axis, None]
    return [axis - len(indices) + 1, None]


def _matmul_axes(
    shapes: list[tuple[int, ...]], out: tuple[int, ...], axis: int
) -> InputAxes | None:
    left, right = shapes
    if len(left) < 2 or len(right) < 2 or axis == len(out) - 1:
        return None
    if axis == len(out) - 2:
        return [len(left) - 2, None]
    return _broadcast_axes([left[:-2], right[:-2]], out[:-2], axis)


@dataclass
class Region:
    """The row-wise part of the graph: its operators (in model order) and the sequence
    axis of every tensor they read in blocks or write."""

    operators: list[Operator]
    axis: dict[str, int]
    rows: int


def find_region(ir: IRGraph, seeds: dict[str, int]) -> Region:
    """Grow the row-wise part from ``seeds`` (tensor name -> sequence axis)."""
    axis = dict(seeds)
    rows = ir.tensor(next(iter(seeds))).shape[next(iter(seeds.values()))]
    members: dict[str, Operator] = {}
    pending = deque(seeds)

    def admit(op: Operator, out_axis: int, reads: InputAxes | None) -> None:
        if op.name in members or reads is None:
            return
        wanted = {
            name: a for name, a in zip(op.inputs, reads, strict=True) if name and a is not None
        }
        wanted.update({name: out_axis for name in op.outputs if name})
        if any(
            axis.get(name, a) != a or ir.tensor(name).shape[a] != rows for name, a in wanted.items()
        ):
            return
        members[op.name] = op
        for name, a in wanted.items():
            if name not in axis:
                axis[name] = a
                pending.append(name)

    while pending:
        name = pending.popleft()
        if ir.has_producer(name):
            producer = ir.producer(name)
            admit(producer, axis[name], input_axes(ir, producer, axis[name]))
        for reader in ir.consumers(name):
            if not reader.outputs or not reader.outputs[0]:
                continue
            for out_axis in range(len(ir.tensor(reader.outputs[0]).shape)):
                reads = input_axes(ir, reader, out_axis)
                slots = [a for n, a in zip(reader.inputs, reads or [], strict=False) if n == name]
                if reads is not None and slots and all(a == axis[name] for a in slots):
                    admit(reader, out_axis, reads)
                    break
    ordered = sorted(members.values(), key=lambda op: (op.index is None, op.index or 0, op.name))
    return Region(ordered, axis, rows)


def _seeds(ir: IRGraph) -> dict[str, int]:
    seeds: dict[str, int] = {}
    for op in ir.operators():
        if op.op_type == "Softmax" and (attention := find_attention(ir, op)) is not None:
            query = ir.tensor(attention.scores.inputs[0])
            seeds.setdefault(query.name, len(query.shape) - 2)
    return seeds


def _tensors(ir: IRGraph, names: Iterable[str]) -> list[Tensor]:
    return [ir.tensor(name) for name in dict.fromkeys(names) if name]


@dataclass
class _Copies:
    """Adds the copies of the region's operators, one block of rows each."""

    ir: IRGraph
    emit: Emitter
    region: Region
    reads: dict[str, InputAxes]
    blocks: dict[str, list[str]]
    recomputed: dict[str, Operator]

    def add(self, op: Operator, index: int, size: int, local: dict[str, str]) -> list[str]:
        """Add copy ``index`` of ``op`` (``size`` rows) and return its outputs; a value
        in :attr:`recomputed` is computed again for it (``local``: those already made)."""
        inputs = [
            self._block(name, index, size, local) if name and axis is not None else name
            for name, axis in zip(op.inputs, self.reads[op.name], strict=True)
        ]
        outputs = [self._new_block(name, index, size) if name else name for name in op.outputs]
        if op.op_type == "Reshape":
            inputs[1] = self.emit.ints(list(self.ir.tensor(outputs[0]).shape))
        self.ir.add_operator(
            Operator(
                self.ir.unique_name(f"{op.name}/rows{index}"),
                op.op_type,
                op.domain,
                inputs=inputs,
                outputs=outputs,
                attributes=dict(op.attributes),
            )
        )
        return outputs

    def _block(self, name: str, index: int, size: int, local: dict[str, str]) -> str:
        if name not in self.recomputed:
            return self.blocks[name][index]
        if name not in local:
            local[name] = self.add(self.recomputed[name], index, size, local)[0]
        return local[name]

    def _new_block(self, name: str, index: int, size: int) -> str:
        tensor = self.ir.tensor(name)
        axis = self.region.axis[name]
        shape = resized(tensor.shape, axis, size)
        nbytes = tensor.nbytes // tensor.shape[axis] * size
        return self.ir.add_value(f"{name}/rows{index}", tensor.dtype, shape, nbytes).name


def _from_constants(ir: IRGraph, region: Region, kept: set[str]) -> dict[str, Operator]:
    """Values of the region an elementwise operator computes from constants alone (a
    causal mask built from index tables) that nothing outside reads: cheaper to compute
    again next to each reader's block than to keep every block alive."""
    found: dict[str, Operator] = {}
    for op in region.operators:
        sources = [name for name in op.inputs if name]
        if (
            op.op_type in _UNARY | _BROADCAST
            and op.outputs[0] not in kept
            and all(
                name in found
                or ir.tensor(name).kind == "weight"
                or (ir.has_producer(name) and ir.producer(name).op_type == "Constant")
                for name in sources
            )
        ):
            found[op.outputs[0]] = op
    return found


def chunk_sequence(ir: IRGraph, region: Region, chunks: int) -> tuple[int, int]:
    """Replace ``region`` by ``chunks`` copies on blocks of rows; return the number of
    values split on the way in and concatenated on the way out."""
    inside = {name for op in region.operators for name in op.outputs if name}
    member_names = {op.name for op in region.operators}
    reads = {
        op.name: input_axes(ir, op, region.axis[op.outputs[0]]) or [] for op in region.operators
    }
    emit = Emitter(ir, "sequence")
    sizes = split_sizes(region.rows, chunks)
    sizes_name = emit.ints(sizes)
    pairs = [
        (name, axis)
        for op in region.operators
        for name, axis in zip(op.inputs, reads[op.name], strict=True)
        if name
    ]
    exits = [
        tensor
        for tensor in _tensors(ir, (n for op in region.operators for n in op.outputs))
        if tensor.graph_output
        or (tensor.name, None) in pairs
        or any(reader.name not in member_names for reader in ir.consumers(tensor.name))
    ]
    entries = _tensors(ir, (n for n, axis in pairs if axis is not None and n not in inside))
    blocks = {
        entry.name: emit.split(entry, sizes, sizes_name, region.axis[entry.name])
        for entry in entries
    }
    recomputed = _from_constants(ir, region, {tensor.name for tensor in exits})
    for op in region.operators:
        ir.remove_operator(op.name)
    copies = _Copies(ir, emit, region, reads, blocks, recomputed)
    for index, size in enumerate(sizes):
        for op in region.operators:
            if op.outputs[0] not in recomputed:
                for name, block in zip(op.outputs, copies.add(op, index, size, {}), strict=True):
                    blocks.setdefault(name, []).append(block)
    for name in inside - {tensor.name for tensor in exits}:
        ir.remove_tensor(name)
    for tensor in exits:
        along: dict[str, AttributeValue] = {"axis": region.axis[tensor.name]}
        emit.op("Concat", blocks[tensor.name], tensor, tensor.shape, along, out=tensor.name)
    return len(entries), len(exits)


@register_pass
@dataclass(frozen=True)
class ChunkSequence(Pass):
    """Run the row-wise part of a transformer in chunks of sequence positions."""

    name = "sequence"
    invalidates = GRAPH_FACTS

    chunks: Chunks = "auto"
    budget: Annotated[int, Bounds(0)] = 0  # bytes of the largest block; 0: default_budget

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        seeds = _seeds(ir)
        if not seeds:
            return PassResult(changed=False, notes=["no attention found: nothing chunked"])
        region = find_region(ir, seeds)
        largest = max(
            ir.tensor(name).nbytes for op in region.operators for name in op.outputs if name
        )
        budget = self.budget or default_budget(context.target)
        wanted = math.ceil(largest / max(1, budget)) if self.chunks == "auto" else int(self.chunks)
        chunks = min(wanted, region.rows)
        if chunks < 2:
            return PassResult(changed=False, notes=["every block already fits: nothing chunked"])
        count = len(region.operators)
        split, joined = chunk_sequence(ir, region, chunks)
        return PassResult(
            changed=True,
            notes=[
                f"{count} operators in {chunks} chunks of {region.rows} sequence rows; "
                f"{split} values split on entry, {joined} concatenated on exit"
            ],
        )
