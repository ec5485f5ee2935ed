"""Fold the shape computations inside a graph, so every tensor gets a static shape.

Exporters (the TorchScript exporter, paddle2onnx at opsets 11-12) compute Reshape,
Expand, Tile, Slice and ConstantOfShape targets from ``Shape`` of other tensors.
ONNX shape inference, even with data propagation, loses those values after a few
operators, and everything downstream has no static shape. This module does what
onnxsim and ONNX Runtime's symbolic shape inference do:

1. find the *known values*: inline constants (``Constant`` nodes, small initializers
   whose bytes are in the file), and ``Shape``/``Size`` of tensors whose shape is
   static;
2. evaluate, with numpy (``onnx.reference``), every deterministic operator whose
   inputs are all known and whose output is small (a shape computation, not a
   workload);
3. run ONNX shape inference on a copy where those values are initializers (the
   folded operators removed), and copy the shapes it finds back onto the model;
4. repeat while new static shapes appear (a new static shape makes a new ``Shape``
   foldable).

The model's operators are never changed: the planner still plans every one of
them; only ``value_info`` (and untyped graph outputs) gain shapes. Weight bytes are
never read: an initializer with external data is simply not a known value.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

logger = logging.getLogger(__name__)

# A value with more elements than this is data, not a shape computation: it is not
# evaluated (its consumers still get shapes from inference once its shape is known).
MAX_FOLDED_ELEMENTS = 4096
# Each round can only make new values known downstream of the last one; real
# exporters need two or three rounds.
MAX_ROUNDS = 8

# Deterministic operators of the default domain that shape computations use. Random
# and stateful operators, and those with subgraphs, are never folded.
FOLDABLE = frozenset(
    {
        *("Constant", "Identity", "Cast", "CastLike", "Shape", "Size"),
        *("Gather", "GatherElements", "GatherND", "Slice", "Concat", "Split"),
        *("Unsqueeze", "Squeeze", "Reshape", "Flatten", "Transpose", "Expand", "Tile"),
        *("ConstantOfShape", "Range", "Where", "Clip", "CumSum", "NonZero"),
        *("Add", "Sub", "Mul", "Div", "Mod", "Pow", "Neg", "Abs", "Sign", "Sqrt"),
        *("Ceil", "Floor", "Round", "Reciprocal", "Min", "Max", "Sum", "Mean"),
        *("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor"),
        *("ReduceProd", "ReduceSum", "ReduceMin", "ReduceMax", "ReduceMean"),
        *("ArgMax", "ArgMin"),
    }
)
# Operators whose output may be much larger than their inputs: their output size is
# bounded from the input values before they are evaluated.
_GENERATORS = frozenset({"ConstantOfShape", "Expand", "Tile", "Range"})


@dataclass(slots=True)
class _Values:
    """What is known about the model's tensors in one round."""

    shapes: dict[str, tuple[int, ...] | None]  # static shape, None when not static
    known: dict[str, np.ndarray] = field(default_factory=dict)  # constant values
    folded: list[onnx.NodeProto] = field(default_factory=list)  # nodes evaluated


def fold_shapes(model: onnx.ModelProto, opset: int) -> bool:
    """Give static shapes to tensors whose shape is computed in the graph.

    Parameters
    ----------
    model:
        A model after ONNX shape inference; its ``value_info`` and graph outputs
        are updated in place.
    opset:
        The default-domain opset, for the evaluator.

    Returns
    -------
    bool
        True when some tensor gained a static shape.

    Raises
    ------
    onnx.shape_inference.InferenceError
        When inference on the folded copy finds the model inconsistent.
    """
    changed = False
    for _ in range(MAX_ROUNDS):
        shapes = _static_shapes(model.graph)
        if all(shapes.get(name) is not None for name in _node_outputs(model.graph)):
            break
        values = _evaluate(model.graph, shapes, opset)
        copy = _folded_copy(model, values)
        if copy is None:
            break
        inferred = onnx.shape_inference.infer_shapes(copy, strict_mode=True, data_prop=True)
        gained = _copy_shapes(model.graph, inferred.graph, values)
        logger.debug("folded %d operators; %d tensors gained shapes", len(values.folded), gained)
        if not gained:
            break
        changed = True
    return changed


def _node_outputs(graph: onnx.GraphProto) -> Iterator[str]:
    return (name for node in graph.node for name in node.output if name)


def _static(value_type: onnx.TypeProto) -> tuple[int, ...] | None:
    if not value_type.HasField("tensor_type") or not value_type.tensor_type.HasField("shape"):
        return None
    dims = value_type.tensor_type.shape.dim
    if not all(d.HasField("dim_value") and d.dim_value >= 0 for d in dims):
        return None
    return tuple(d.dim_value for d in dims)


def _static_shapes(graph: onnx.GraphProto) -> dict[str, tuple[int, ...] | None]:
    shapes = {v.name: _static(v.type) for v in [*graph.input, *graph.value_info, *graph.output]}
    shapes.update((t.name, tuple(t.dims)) for t in graph.initializer)
    return shapes


def _inline_value(tensor: onnx.TensorProto) -> np.ndarray | None:
    """The value of a small tensor whose bytes are in the file (never external data)."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
        return None
    if math.prod(tensor.dims) > MAX_FOLDED_ELEMENTS:
        return None
    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, TypeError):  # a type numpy cannot hold, or inconsistent data
        return None


def _evaluate(
    graph: onnx.GraphProto, shapes: dict[str, tuple[int, ...] | None], opset: int
) -> _Values:
    values = _Values(shapes)
    # A tensor with no elements has a known value whatever the data (e.g. empty axes).
    for value in [*graph.input, *graph.value_info]:
        shape, elem_type = shapes.get(value.name), value.type.tensor_type.elem_type
        if shape is not None and math.prod(shape) == 0 and elem_type:
            values.known[value.name] = np.zeros(
                shape, onnx.helper.tensor_dtype_to_np_dtype(elem_type)
            )
    for tensor in graph.initializer:
        value = _inline_value(tensor)
        if value is not None:
            values.known[tensor.name] = value
    for node in _topological(graph):
        outputs = _fold(node, values, opset)
        if outputs is None:
            continue
        values.folded.append(node)
        for name, value in zip(node.output, outputs, strict=False):
            if name:
                values.known[name] = value
    return values


def _topological(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Nodes in an order where producers come first (the frontend checked there is no cycle)."""
    producer = {name: i for i, node in enumerate(graph.node) for name in node.output if name}
    done: set[int] = set()
    order: list[onnx.NodeProto] = []
    for start in range(len(graph.node)):
        stack = [start]
        while stack:
            index = stack[-1]
            if index in done:
                stack.pop()
                continue
            pending = [
                producer[name]
                for name in graph.node[index].input
                if name in producer and producer[name] not in done
            ]
            if pending:
                stack.extend(pending)
                continue
            done.add(index)
            order.append(graph.node[index])
            stack.pop()
    return order


def _fold(node: onnx.NodeProto, values: _Values, opset: int) -> list[np.ndarray] | None:
    """The output values of ``node`` when it can be folded, else None."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in FOLDABLE:
        return None
    if node.op_type in ("Shape", "Size"):
        return _shape_of(node, values.shapes.get(node.input[0]))
    inputs = [values.known.get(name) if name else None for name in node.input]
    if any(name and value is None for name, value in zip(node.input, inputs, strict=True)):
        return None
    if not _small_enough(node, inputs):
        return None
    feeds = {name: value for name, value in zip(node.input, inputs, strict=True) if name}
    try:
        outputs = _axes_attribute_op(node, inputs[0] if inputs else None) or ReferenceEvaluator(
            node, opsets={"": opset}
        ).run(None, feeds)
    except Exception:  # folding is best effort: a node the evaluator rejects stays unknown
        return None
    arrays = [np.asarray(value) for value in outputs]
    if any(array.size > MAX_FOLDED_ELEMENTS or array.dtype == object for array in arrays):
        return None
    return arrays


def _axes_attribute_op(node: onnx.NodeProto, data: np.ndarray | None) -> list[np.ndarray] | None:
    """Unsqueeze/Squeeze before opset 13 (``axes`` attribute), which onnx.reference mishandles."""
    axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
    if data is None or axes is None or node.op_type not in ("Unsqueeze", "Squeeze"):
        return None
    if node.op_type == "Squeeze":
        return [np.squeeze(data, axis=tuple(axes))]
    rank = data.ndim + len(axes)
    for axis in sorted(a + rank if a < 0 else a for a in axes):
        data = np.expand_dims(data, axis)
    return [data]


def _shape_of(node: onnx.NodeProto, shape: tuple[int, ...] | None) -> list[np.ndarray] | None:
    if shape is None:
        return None
    if node.op_type == "Size":
        return [np.array(math.prod(shape), dtype=np.int64)]
    attributes = {a.name: a.i for a in node.attribute}
    rank = len(shape)
    start, end = attributes.get("start", 0), attributes.get("end", rank)
    start, end = (min(max(i + rank if i < 0 else i, 0), rank) for i in (start, end))
    return [np.array(shape[start:end], dtype=np.int64)]


def _small_enough(node: onnx.NodeProto, inputs: list[np.ndarray | None]) -> bool:
    """Bound the output size before evaluating an operator that can blow it up."""
    if node.op_type == "Constant":
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        return value is None or _inline_value(value) is not None
    if node.op_type not in _GENERATORS:
        return True
    known = [value for value in inputs if value is not None]
    try:
        if node.op_type == "ConstantOfShape":
            count = _product(np.ravel(known[0]))
        elif node.op_type == "Expand":
            target = tuple(int(d) for d in np.ravel(known[1]))
            count = _product(np.broadcast_shapes(known[0].shape, target))
        elif node.op_type == "Tile":
            count = known[0].size * _product(np.ravel(known[1]))
        else:  # Range
            start, limit, delta = (float(np.ravel(v)[0]) for v in known)
            count = math.ceil((limit - start) / delta) if delta else MAX_FOLDED_ELEMENTS + 1
    except (ValueError, TypeError, IndexError, OverflowError):
        return False
    return 0 <= count <= MAX_FOLDED_ELEMENTS


def _product(values: Iterable[Any]) -> int:
    """Exact product of integers (Python ints: no int64 overflow)."""
    return reduce(operator.mul, (int(v) for v in values), 1)


def _folded_copy(model: onnx.ModelProto, values: _Values) -> onnx.ModelProto | None:
    """A copy where folded operators are gone and the values they made are initializers.

    None when there is nothing to substitute.
    """
    made = {name for node in values.folded for name in node.output if name}
    # A known graph input (one with no elements) becomes an initializer too; inference
    # reads an initializer's value only when no graph input overrides it.
    made.update(v.name for v in model.graph.input if v.name in values.known)
    made.difference_update(t.name for t in model.graph.initializer)
    if not made:
        return None
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    folded = {id(node) for node in values.folded}
    inputs = [v for v in copy.graph.input if v.name not in made]
    del copy.graph.input[:]
    copy.graph.input.extend(inputs)
    kept = [node for node in model.graph.node if id(node) not in folded]
    del copy.graph.node[:]
    copy.graph.node.extend(kept)
    for name in sorted(made):
        copy.graph.initializer.append(numpy_helper.from_array(values.known[name], name))
    # value_info of the folded values would now duplicate the initializers' types.
    infos = [v for v in copy.graph.value_info if v.name not in made]
    del copy.graph.value_info[:]
    copy.graph.value_info.extend(infos)
    for node in copy.graph.node:
        for attribute in node.attribute:
            for body in [attribute.g] if attribute.HasField("g") else attribute.graphs:
                _inline_outer_values(body, values.known)
    return copy


def _inline_outer_values(body: onnx.GraphProto, known: dict[str, np.ndarray]) -> None:
    """Give a subgraph its own copy of the known outer-scope values it reads.

    Inference of a subgraph (If/Loop/Scan body) sees the types of outer values but
    not their contents, so an ``Unsqueeze`` whose axes come from outside has no
    shape. Each such read is renamed to a fresh name bound to an initializer of the
    body (a fresh name, because a body may not shadow an outer name).
    """
    defined = {v.name for v in body.input} | {t.name for t in body.initializer}
    defined.update(name for node in body.node for name in node.output)
    renamed: dict[str, str] = {}
    for node in body.node:
        for slot, name in enumerate(node.input):
            if name and name not in defined and name in known:
                if name not in renamed:
                    renamed[name] = f"{name}__tierplan_folded"
                    body.initializer.append(numpy_helper.from_array(known[name], renamed[name]))
                node.input[slot] = renamed[name]
        for attribute in node.attribute:
            for inner in [attribute.g] if attribute.HasField("g") else attribute.graphs:
                _inline_outer_values(inner, {k: v for k, v in known.items() if k not in defined})


def _copy_shapes(graph: onnx.GraphProto, inferred: onnx.GraphProto, values: _Values) -> int:
    """Set static shapes found on the folded copy where ``graph`` has none; count them."""
    found: dict[str, onnx.TypeProto] = {}
    for value in [*inferred.value_info, *inferred.output]:
        if _static(value.type) is not None:
            found[value.name] = value.type
    for node in values.folded:
        for name in node.output:
            if name:
                array = values.known[name]
                found[name] = onnx.helper.make_tensor_type_proto(
                    numpy_helper.from_array(array).data_type, array.shape
                )
    entries = {v.name: v for v in graph.value_info}
    gained = 0
    for name in _node_outputs(graph):
        if name not in found:
            continue
        entry = entries.get(name)
        if entry is not None and _static(entry.type) is not None:
            continue
        if entry is None:
            entry = graph.value_info.add()
            entry.name = name
        elem_type = entry.type.tensor_type.elem_type
        entry.type.CopyFrom(found[name])
        if elem_type:  # the model's declared element type wins over the evaluator's
            entry.type.tensor_type.elem_type = elem_type
        gained += 1
    for output in graph.output:
        if _static(output.type) is None and output.name in found:
            output.type.CopyFrom(found[output.name])
    return gained
