"""``precision``: store activations in 16 bits; numerically sensitive operators stay float32.

Reads: operators, element types, shapes (before ``schedule``). Writes: the graph. Every
float32 activation an operator computes in 16 bits is stored in ``activations``
(``float16``); operators that are numerically sensitive in 16 bits compute in float32
with ``Cast`` operators around them; graph inputs and outputs keep their types (a
``Cast`` at the boundary). Every new operator is ``inserted``.

Which operators compute in float32 (*kept*):

- :data:`SENSITIVE` (ours: normalizations, Softmax, accumulating reductions,
  exponentials, powers and roots), or the ``keep=OpType+OpType`` option instead
  (``keep=none``: none of them);
- :data:`ORT_FLOAT32_ONLY`, onnxconverter-common's ``DEFAULT_OP_BLOCK_LIST``
  (``onnxconverter_common/float16.py``, MIT licence, copied with attribution: the
  package's conversion works on an ``onnx.ModelProto``, not on this IR, so only its
  list would be used, and a list does not justify a dependency);
- operators of another domain than ONNX's, whose kernels we do not know;
- a decomposed normalization: the elementwise steps between a kept reduction and a
  kept operator (``ReduceMean -> Sub -> Pow -> ReduceMean -> Add(eps) -> Sqrt``), so
  that an ``eps`` of 1e-12 is not lost to float16's range;
- with ``weights=keep``, an operator whose float16 copies of float32 weights would
  take more bytes than computing it in float32 (casting its activations up and its
  result down): an embedding ``Gather`` or a ``MatMul`` with a large weight matrix.
  The copies are activations (each ``Cast`` of a weight writes a new tensor) and are
  counted as such; ``weights=float16`` stores the weights in float16 instead (those
  that only kept operators read stay float32), which needs no copies.

As onnxconverter-common does, a value has one ``Cast`` per precision its readers need
(shared by all of them), so a kept operator's float32 result lives only until its
``Cast`` down. Casts are added in the order of their value's first use in the model,
which the scheduler's reference order follows: a weight's copy is made when its
reader comes, not all at the start. ``Cast``, ``Constant``, ``ConstantOfShape`` and
the random generators keep the type their attribute gives; a ``Cast`` to float32
whose every reader computes in 16 bits is retargeted to float16.

A kept row-wise operator (Softmax, LogSoftmax, LayerNormalization) whose float32 copy
is at least as large as the largest 16-bit activation (it may set the peak) runs in
``chunks`` blocks of its outermost non-unit row axis, each with its own casts
(:class:`_RowChunker`); ``chunks=1`` turns that off.

``weights=float16`` changes the weights' element type in the IR; the annotated model
converts weights stored inside the .onnx file and only retypes external ones (their
file is never opened), and ``tierplan run`` writes the float32 values it runs the
reference on into the 16-bit buffers, rounded.

Refused: ``activations=bfloat16`` (onnxruntime's CPU provider, which runs the planned
model and ``tierplan run``, has no bfloat16 kernel for Add, Mul, Relu, Softmax ...),
and graphs with subgraphs (If, Loop, Scan: their bodies are typed for float32); such a
graph is left unchanged with a note.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Literal

from tierplan.compiler.errors import PipelineError
from tierplan.compiler.frontend import onnx_element_type
from tierplan.compiler.ir import AttributeValue, IRGraph, Operator, Tensor
from tierplan.compiler.pass_manager import (
    GRAPH_FACTS,
    Bounds,
    Pass,
    PassContext,
    PassResult,
    register_pass,
)

SENSITIVE = frozenset(
    {
        "LayerNormalization", "GroupNormalization", "InstanceNormalization",
        "RMSNormalization", "LpNormalization", "MeanVarianceNormalization",
        "Softmax", "LogSoftmax",
        "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceProd",
        "Exp", "Log", "Pow", "Sqrt", "Reciprocal", "Softplus",
    }
)  # fmt: skip
"""Operators that lose accuracy or range in 16 bits: they compute in float32."""

ORT_FLOAT32_ONLY = frozenset(
    {
        "ArrayFeatureExtractor", "Binarizer", "CastMap", "CategoryMapper", "DictVectorizer",
        "FeatureVectorizer", "Imputer", "LabelEncoder", "LinearClassifier",
        "LinearRegressor", "Normalizer", "OneHotEncoder", "RandomUniformLike",
        "SVMClassifier", "SVMRegressor", "Scaler", "TreeEnsembleClassifier",
        "TreeEnsembleRegressor", "ZipMap", "NonMaxSuppression", "TopK", "RoiAlign",
        "Resize", "Range", "CumSum", "Min", "Max", "Upsample",
    }
)  # fmt: skip
"""onnxconverter-common 1.16's ``DEFAULT_OP_BLOCK_LIST`` (MIT): no float16 kernels."""

_OWN_TYPES = frozenset(
    {"Cast", "Constant", "ConstantOfShape", "RandomNormal", "RandomUniform", "Shape", "Size"}
)
"""Operators whose output type is an attribute's (their float32 outputs stay float32), or
that read only the shape of their input: they read values in whatever type they have."""

_FOLLOWS_INPUT_TYPE = frozenset(
    {
        "CastLike", "EyeLike", "RandomNormalLike", "Bernoulli", "Multinomial",
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
    }
)  # fmt: skip
"""Operators whose output type follows an input's in ways 16 bits would change, or
whose float inputs are float32 only before some opset (quantization scales)."""

_ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Neg", "Abs", "Reciprocal"})
"""Steps of a decomposed normalization that may sit between two kept operators."""

_STATISTICS = frozenset(name for name in SENSITIVE if name.startswith("Reduce"))

_PARAMETER_SLOTS = frozenset({("Dropout", 1)})
"""Float input slots with a type of their own (not the operator's T): never cast."""

_FLOAT32 = "float32"
LOW, HIGH, OWN = "low", "high", "own"
"""How an operator computes: in 16 bits, in float32, or in the types it has (no cast)."""


def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    return math.prod(shape) * (4 if dtype == _FLOAT32 else 2)


@dataclass
class _Plan:
    """The decisions of one run: how each operator computes."""

    ir: IRGraph
    low: str
    kept: frozenset[str]
    cast_weights: bool

    def modes(self) -> dict[str, str]:
        """Each operator's mode (``LOW``, ``HIGH``, ``OWN``)."""
        ir = self.ir
        modes = {op.name: self._mode(op) for op in ir.operators()}
        self._keep_statistic_chains(modes)
        return modes

    def _mode(self, op: Operator) -> str:
        names = [*op.inputs, *op.outputs]
        if not any(name and self.ir.tensor(name).dtype == _FLOAT32 for name in names):
            return OWN
        if op.op_type in _OWN_TYPES and not op.domain:
            return OWN
        if op.domain not in ("", "ai.onnx") or op.op_type in _FOLLOWS_INPUT_TYPE:
            return HIGH
        if op.op_type in self.kept:
            return HIGH
        if self.cast_weights and self._weight_copies_cost_more(op):
            return HIGH
        return LOW

    def _weight_copies_cost_more(self, op: Operator) -> bool:
        """True when 16-bit copies of ``op``'s float32 weights would outweigh float32
        copies of its activations (inputs cast up, its result before the cast down)."""
        tensors = [self.ir.tensor(name) for name in dict.fromkeys(op.inputs) if name]
        copies = sum(t.nbytes // 2 for t in tensors if t.kind == "weight" and t.dtype == _FLOAT32)
        floats = [t for t in tensors if t.kind != "weight" and t.dtype == _FLOAT32]
        floats += [t for n in op.outputs if n and (t := self.ir.tensor(n)).dtype == _FLOAT32]
        return copies > sum(t.nbytes for t in floats)

    def _keep_statistic_chains(self, modes: dict[str, str]) -> None:
        """Keep the elementwise steps that read a kept statistic (or such a step) and
        feed a kept operator: a decomposed normalization stays float32 as a whole."""
        ir = self.ir
        sources = {op.name for op in ir.operators() if op.op_type in _STATISTICS}
        sources &= {name for name, mode in modes.items() if mode == HIGH}
        changed = True
        while changed:
            changed = False
            for op in ir.operators():
                if modes[op.name] != LOW or op.op_type not in _ELEMENTWISE or op.domain:
                    continue
                reads_statistic = any(
                    name and ir.has_producer(name) and ir.producer(name).name in sources
                    for name in op.inputs
                )
                feeds_kept = any(
                    modes[reader.name] == HIGH
                    for name in op.outputs
                    if name
                    for reader in ir.consumers(name)
                )
                if reads_statistic and feeds_kept:
                    modes[op.name] = HIGH
                    sources.add(op.name)
                    changed = True


@dataclass
class _Rewriter:
    """Applies the modes: retypes values and inserts the casts between precisions."""

    ir: IRGraph
    low: str
    modes: dict[str, str]
    store_weights_low: bool
    casts: int = 0

    def wanted(self, op: Operator, slot: int, tensor: Tensor) -> str:
        """The precision ``op`` reads ``tensor`` at ``slot`` in."""
        mode = self.modes[op.name]
        if mode == OWN or (op.op_type, slot) in _PARAMETER_SLOTS:
            return tensor.dtype
        return self.low if mode == LOW else _FLOAT32

    def native(self, tensor: Tensor, readers: list[tuple[Operator, str]]) -> str:
        """The precision ``tensor`` is stored in under its own name."""
        if tensor.kind == "input" or tensor.graph_output:
            return _FLOAT32
        if tensor.kind == "weight":
            low_readers = any(dtype == self.low for _, dtype in readers)
            return self.low if self.store_weights_low and low_readers else _FLOAT32
        producer = self.ir.producer(tensor.name)
        if self.modes[producer.name] == LOW:
            return self.low
        retargetable = producer.op_type == "Cast" and not producer.domain and readers
        if retargetable and all(dtype == self.low for _, dtype in readers):
            return self.low  # retargeted: the Cast writes 16 bits itself
        return _FLOAT32

    def apply(self) -> None:
        ir = self.ir
        for tensor in sorted((t for t in ir.tensors() if t.dtype == _FLOAT32), key=self._first_use):
            readers = [
                (op, self.wanted(op, slot, tensor))
                for op in ir.consumers(tensor.name)
                for slot, name in enumerate(op.inputs)
                if name == tensor.name
            ]
            native = self.native(tensor, readers)
            written_low = ir.has_producer(tensor.name) and (
                self.modes[ir.producer(tensor.name).name] == LOW
            )
            versions = {native: tensor.name}
            if tensor.graph_output and written_low:
                versions[self.low] = self._write_through_cast(tensor)
            elif native != _FLOAT32:
                self._retype(tensor, native)
            for dtype in sorted({d for _, d in readers} - set(versions)):
                versions[dtype] = self._cast(tensor.name, dtype)
            for op, dtype in readers:
                if versions[dtype] != tensor.name:
                    ir.redirect_read(op, tensor.name, versions[dtype])

    def _first_use(self, tensor: Tensor) -> int:
        """Model position of the first operator that writes or reads ``tensor``: casts are
        added in that order, which the scheduler's reference order follows, so that a
        weight's copy is made when its reader comes, not all at the start."""
        ops = self.ir.consumers(tensor.name)
        if self.ir.has_producer(tensor.name):
            ops.append(self.ir.producer(tensor.name))
        return min((op.index for op in ops if op.index is not None), default=-1)

    def _retype(self, tensor: Tensor, dtype: str) -> None:
        tensor.dtype, tensor.nbytes = dtype, _nbytes(tensor.shape, dtype)
        if tensor.kind != "weight":
            producer = self.ir.producer(tensor.name)
            if producer.op_type == "Cast" and self.modes[producer.name] == OWN:
                self._retarget(producer, dtype)

    def _retarget(self, cast: Operator, dtype: str) -> None:
        """Replace a Cast to float32 by an inserted Cast to ``dtype`` (same name)."""
        self.ir.remove_operator(cast.name)
        attributes = {**cast.attributes, "to": onnx_element_type(dtype)}
        self.ir.add_operator(
            Operator(
                cast.name, "Cast", inputs=cast.inputs, outputs=cast.outputs, attributes=attributes
            )
        )

    def _write_through_cast(self, output: Tensor) -> str:
        """The producer of graph output ``output`` writes 16 bits; a Cast writes the output."""
        low = self.ir.add_value(
            f"{output.name}/{self.low}", self.low, output.shape, _nbytes(output.shape, self.low)
        )
        self.ir.redirect_write(self.ir.producer(output.name), output.name, low.name)
        self._cast(low.name, _FLOAT32, out=output.name)
        return low.name

    def _cast(self, source: str, dtype: str, out: str | None = None) -> str:
        self.casts += 1
        return add_cast(self.ir, source, dtype, out)


def add_cast(ir: IRGraph, source: str, dtype: str, out: str | None = None) -> str:
    """Add ``Cast(source)`` to ``dtype``, writing ``out`` or a new tensor; return the output."""
    if out is None:
        shape = ir.tensor(source).shape
        out = ir.add_value(f"{source}/{dtype}", dtype, shape, _nbytes(shape, dtype)).name
    ir.add_operator(
        Operator(
            ir.unique_name(f"{source}/Cast"), "Cast",
            inputs=[source], outputs=[out], attributes={"to": onnx_element_type(dtype)},
        )
    )  # fmt: skip
    return out


def kept_operators(keep: str) -> frozenset[str]:
    """The operators ``keep=`` names (``OpType+OpType``; ``none``: no sensitive one), or
    the defaults for ``""``; onnxruntime's float32-only operators are always kept."""
    if not keep:
        return SENSITIVE | ORT_FLOAT32_ONLY
    if keep == "none":
        return ORT_FLOAT32_ONLY
    names = [name.strip() for name in keep.split("+")]
    bad = [name for name in names if not name.isidentifier()]
    if bad:
        raise PipelineError(
            f"precision{{keep={keep}}}: expected operator types joined by '+' "
            f"(e.g. keep=Softmax+LayerNormalization), not {bad[0]!r}"
        )
    return frozenset(names) | ORT_FLOAT32_ONLY


def _subgraph_operators(ir: IRGraph) -> Iterable[Operator]:
    return (
        op for op in ir.operators() if op.implicit_inputs or op.op_type in ("If", "Loop", "Scan")
    )


@register_pass
@dataclass(frozen=True)
class Precision(Pass):
    """Store activations in 16 bits; sensitive operators compute in float32 between Casts."""

    name = "precision"
    invalidates = GRAPH_FACTS

    activations: Literal["float16", "bfloat16"] = "float16"  # bfloat16: refused, see below
    keep: str = ""  # operator types joined by '+'; "": the sensitive ones; "none"
    weights: Literal["keep", "float16"] = "keep"
    chunks: Annotated[int, Bounds(1)] = 4

    def check_options(self) -> None:
        """Refuse bfloat16 (nothing could run it) and a malformed ``keep``."""
        if self.activations == "bfloat16":
            raise PipelineError(
                "precision{activations=bfloat16}: onnxruntime's CPU provider has no bfloat16 "
                "kernels for Add, Mul, MatMul, Relu, Softmax ..., so neither the planned model "
                "nor tierplan run could execute it; use activations=float16"
            )
        kept_operators(self.keep)

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        blocked = next(iter(_subgraph_operators(ir)), None)
        if blocked is not None:
            note = f"left unchanged: {blocked.name!r} ({blocked.op_type}) has a subgraph typed for float32"
            return PassResult(changed=False, notes=[note])
        plan = _Plan(ir, self.activations, kept_operators(self.keep), self.weights == "keep")
        modes = plan.modes()
        rewriter = _Rewriter(ir, self.activations, modes, self.weights == "float16")
        rewriter.apply()
        chunker = _RowChunker(ir, self.chunks)
        if self.chunks > 1:
            chunker.run(self.activations)
        low = sum(mode == LOW for mode in modes.values())
        high = sum(mode == HIGH for mode in modes.values())
        notes = [
            f"{low} operators compute in {self.activations}, {high} in float32, "
            f"{rewriter.casts} casts inserted, {chunker.count} kept row-wise operators "
            f"in {self.chunks} chunks"
        ]
        return PassResult(changed=low > 0, notes=notes)


ROW_WISE = frozenset({"Softmax", "LogSoftmax", "LayerNormalization"})
"""Kept operators that compute each row alone: they can run in chunks of rows."""


@dataclass
class _RowChunker:
    """Runs a kept row-wise operator, with its casts, in chunks of its outer rows.

    ``Cast(x16) -> op -> Cast(y32)`` holds a float32 copy of the whole tensor next to
    the 16-bit input (or output): three times the 16-bit bytes at once. In chunks,
    ``Split(x16) -> [Cast, op, Cast] per chunk -> Concat`` holds one chunk in float32,
    and the input and its parts (or the parts and the output): twice the 16-bit bytes,
    and once the parts are views of the whole (plan-format's slice views and concat
    parts), barely more than once.
    """

    ir: IRGraph
    chunks: int
    count: int = 0

    def run(self, low: str) -> None:
        """Chunk the kept row-wise operators whose float32 copy would be at least as large
        as the largest 16-bit activation: the ones that can set the peak."""
        activations = (t for t in self.ir.tensors() if t.dtype == low and t.kind != "weight")
        largest = max((t.nbytes for t in activations), default=0)
        for op in [op for op in self.ir.operators() if op.op_type in ROW_WISE]:
            found = self._match(op)
            if found is not None and self.ir.tensor(op.inputs[0]).nbytes >= largest:
                self._rewrite(op, *found)

    def _match(self, op: Operator) -> tuple[Operator, Operator, int] | None:
        """The Cast up before ``op``, the Cast down after it and the axis to chunk."""
        ir = self.ir
        outputs = [name for name in op.outputs if name]
        if op.domain or not op.inputs or len(outputs) != 1 or not ir.has_producer(op.inputs[0]):
            return None
        up = ir.producer(op.inputs[0])
        readers = ir.consumers(outputs[0])
        if up.op_type != "Cast" or not up.inserted or len(readers) != 1:
            return None
        down = readers[0]
        if down.op_type != "Cast" or not down.inserted or ir.tensor(outputs[0]).graph_output:
            return None
        if len(ir.consumers(op.inputs[0])) != 1 or op.inputs[0] in op.inputs[1:]:
            return None
        shape = ir.tensor(op.inputs[0]).shape
        first_row_axis = _normalized_from(op, len(shape), ir.model.opset)
        axis = next((a for a in range(first_row_axis) if shape[a] > 1), None)
        return None if axis is None else (up, down, axis)

    def _rewrite(self, op: Operator, up: Operator, down: Operator, axis: int) -> None:
        ir = self.ir
        source, result = ir.tensor(up.inputs[0]), ir.tensor(down.outputs[0])
        for removed in (up, op, down):
            ir.remove_operator(removed.name)
        ir.remove_tensor(op.inputs[0])
        ir.remove_tensor(op.outputs[0])
        count = min(self.chunks, source.shape[axis])
        base, extra = divmod(source.shape[axis], count)
        sizes = [base + (index < extra) for index in range(count)]
        parts = self._split(source, axis, sizes, op.name)
        pieces = []
        for index, part in enumerate(parts):
            wide = add_cast(ir, part, _FLOAT32)
            shape = ir.tensor(wide).shape
            computed = ir.add_value(
                f"{op.name}/part{index}", _FLOAT32, shape, _nbytes(shape, _FLOAT32)
            )
            ir.add_operator(
                Operator(
                    ir.unique_name(f"{op.name}/part{index}"), op.op_type,
                    inputs=[wide, *op.inputs[1:]], outputs=[computed.name],
                    attributes=dict(op.attributes),
                )
            )  # fmt: skip
            pieces.append(add_cast(ir, computed.name, result.dtype))
        ir.add_operator(
            Operator(
                ir.unique_name(f"{op.name}/Concat"), "Concat",
                inputs=pieces, outputs=[result.name], attributes={"axis": axis},
            )
        )  # fmt: skip
        self.count += 1

    def _split(self, source: Tensor, axis: int, sizes: list[int], at: str) -> list[str]:
        ir = self.ir
        parts = []
        for index, size in enumerate(sizes):
            shape = (*source.shape[:axis], size, *source.shape[axis + 1 :])
            made = ir.add_value(
                f"{source.name}/rows{index}", source.dtype, shape, _nbytes(shape, source.dtype)
            )
            parts.append(made.name)
        inputs = [source.name]
        attributes: dict[str, AttributeValue] = {"axis": axis}
        if ir.model.opset >= 13:
            split = ir.add_value(f"{at}/split", "int64", (len(sizes),), 8 * len(sizes))
            split.value = sizes
            ir.add_operator(
                Operator(
                    ir.unique_name(f"{at}/Constant"), "Constant",
                    outputs=[split.name], attributes={"value_ints": sizes},
                )
            )  # fmt: skip
            inputs.append(split.name)
        else:
            attributes["split"] = sizes
        ir.add_operator(
            Operator(
                ir.unique_name(f"{at}/Split"),
                "Split",
                inputs=inputs,
                outputs=parts,
                attributes=attributes,
            )
        )
        return parts


def _normalized_from(op: Operator, rank: int, opset: int) -> int:
    """The first axis ``op`` reads as one row (Softmax before opset 13: all from ``axis``)."""
    axis = op.attributes.get("axis", -1 if op.op_type == "LayerNormalization" or opset >= 13 else 1)
    return axis % rank if isinstance(axis, int) and rank else 0
