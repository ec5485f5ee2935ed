"""ONNX frontend: read a model file and lower it to the IR.

Weight bytes are never read (``load_external_data=False``): shapes and element
types are all the planner needs, so a model whose external weight file is absent
still compiles. The steps, each of which reports bad input in one line:

1. read the file and parse the protobuf;
2. name unnamed operators ``<op_type>_<index>`` (duplicates get ``__<index>``);
3. check the structure: names are declared once, every tensor read is produced once,
   and there is no cycle;
4. bind symbolic dimensions (``dims``) and user-given shapes (``shapes``), then run
   ONNX shape inference with data propagation;
5. fold the shape computations inside the graph (``shape_folding``) where inference
   left a tensor without a static shape;
6. give every tensor a static shape, a dtype and an exact size, and build the IR.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from onnx import helper, numpy_helper
from tierplan.compiler.errors import InputError
from tierplan.compiler.inputs import MAX_BYTES, MAX_MODEL_FILE, integer_text, read_bytes, shown
from tierplan.compiler.ir import AttributeValue, IRGraph, ModelInfo, Operator, Tensor, TensorKind
from tierplan.compiler.shape_folding import fold_shapes

# Integer constants up to this many elements keep their values in the IR (Tensor.value).
MAX_CONSTANT_ELEMENTS = 64

# Element type number -> name; built once (the enum lookup is slow per tensor).
_TYPE_NAMES = {number: name for name, number in onnx.TensorProto.DataType.items()}

_SUB_BYTE_BITS = {
    name: bits
    for name, bits in [("INT4", 4), ("UINT4", 4), ("FLOAT4E2M1", 4), ("INT2", 2), ("UINT2", 2)]
    if hasattr(onnx.TensorProto, name)
}


@dataclass(slots=True)
class LoadedModel:
    """A parsed model: the annotated-ready ONNX proto (names assigned, shapes inferred) and its IR."""

    proto: onnx.ModelProto
    ir: IRGraph
    path: Path


def parse_input_shapes(specs: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """Read ``NAME:1,3,224,224`` specs (the onnxsim/onnxslim convention) into a dict."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, sep, dims = spec.rpartition(":")
        if not sep or not name:
            raise InputError(
                f"cannot read shape {shown(spec)}: expected NAME:D1,D2,... (e.g. x:1,3,224,224)"
            )
        what = f"cannot read shape {shown(spec)}"
        shapes[name] = (
            tuple(integer_text(d, what, 0, MAX_BYTES) for d in dims.split(",")) if dims else ()
        )
    return shapes


def parse_dims(specs: Iterable[str]) -> dict[str, int]:
    """Read ``NAME=VALUE`` specs for symbolic dimensions into a dict."""
    dims: dict[str, int] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name.strip():
            raise InputError(
                f"cannot read dimension {shown(spec)}: expected NAME=VALUE with VALUE > 0"
            )
        dims[name.strip()] = integer_text(
            value, f"cannot read dimension {shown(spec)}", 1, MAX_BYTES
        )
    return dims


def read_model_proto(path: Path) -> tuple[onnx.ModelProto, str]:
    """Parse an ONNX file without its weights, and hash it; one-line errors for bad files."""
    data = read_bytes(path, "model file", MAX_MODEL_FILE)
    try:
        model = onnx.load_model_from_string(data)
    except DecodeError:
        raise InputError(
            f"{str(path)!r} is not an ONNX model (protobuf parse failed; truncated?)"
        ) from None
    except Exception as error:
        raise InputError(f"{str(path)!r} is not an ONNX model ({type(error).__name__})") from None
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise InputError(f"{str(path)!r} is not an ONNX model (no IR version or graph)")
    if not model.graph.node:
        raise InputError(f"{str(path)!r}: the graph has no operators")
    undecodable = _undecodable_string(model)
    if undecodable is not None:
        raise InputError(f"{str(path)!r}: {undecodable} is not valid UTF-8")
    return model, hashlib.sha256(data).hexdigest()


def _undecodable_string(message: Message, where: str = "model") -> str | None:
    """The first string field that protobuf could not decode as UTF-8 (it hands those
    back as bytes, which no name may be), as ``field path = value``; None if none."""
    for field, value in message.ListFields():
        if field.type not in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_MESSAGE):
            continue  # numbers and bytes (weights) are not decoded
        place = f"{where}.{field.name}"
        repeated = field.is_repeated
        values = list(value) if repeated else [value]
        if field.type == FieldDescriptor.TYPE_STRING:
            bad = next((v for v in values if not isinstance(v, str)), None)
            if bad is not None:
                return f"{place} = {bad!r}"
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for index, item in enumerate(values):
                found = _undecodable_string(item, f"{place}[{index}]" if repeated else place)
                if found is not None:
                    return found
    return None


def load_model(
    path: str | Path,
    dims: Mapping[str, int] | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> LoadedModel:
    """Read an ONNX file and lower it to the IR.

    Parameters
    ----------
    path:
        The .onnx file. External weight files are never opened.
    dims:
        Values for symbolic dimensions, e.g. ``{"batch": 1, "seq": 128}``.
    shapes:
        Shapes for tensors whose shape cannot be inferred (graph inputs or any
        intermediate), e.g. ``{"x": (1, 3, 224, 224)}``.

    Raises
    ------
    InputError
        With a one-line message, for any problem with the file or the graph.
    """
    path = Path(path)
    dims = dict(dims or {})
    bound_shapes = {name: tuple(shape) for name, shape in (shapes or {}).items()}
    model, sha256 = read_model_proto(path)
    names = _assign_node_names(model.graph)
    _check_structure(model.graph, names)
    _bind(model.graph, dims, bound_shapes)
    model = _infer_shapes(model)
    if _type_user_shapes(model.graph, set(bound_shapes)):
        model = _infer_shapes(model)
    _fold_shapes(model)
    ir = IRGraph(
        ModelInfo(
            path=path.name, sha256=sha256, dims=dict(sorted(dims.items())), opset=_opset(model)
        )
    )
    _lower(model.graph, ir)
    return LoadedModel(proto=model, ir=ir, path=path)


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _assign_node_names(graph: onnx.GraphProto) -> list[str]:
    """Give every node a unique name (written into the proto) and return them in order."""
    taken: set[str] = set()
    names = []
    for index, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{index}"
        while name in taken:
            name = f"{name}__{index}"
        taken.add(name)
        node.name = name
        names.append(name)
    return names


def _outer_references(graph: onnx.GraphProto) -> list[str]:
    """Names a subgraph reads from enclosing scopes (implicit inputs of its owner)."""
    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    for node in graph.node:
        defined.update(node.output)
    refs: list[str] = []
    for node in graph.node:
        used = list(node.input) + [n for sub in _subgraphs(node) for n in _outer_references(sub)]
        refs.extend(name for name in used if name and name not in defined)
    refs.extend(v.name for v in graph.output if v.name not in defined)
    return list(dict.fromkeys(refs))


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    graphs = []
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            graphs.append(attribute.g)
        elif attribute.type == onnx.AttributeProto.GRAPHS:
            graphs.extend(attribute.graphs)
    return graphs


def _check_names(graph: onnx.GraphProto) -> None:
    """Graph inputs, initializers and graph outputs are each declared once, and agree."""
    for kind, declared in [
        ("graph input", [v.name for v in graph.input]),
        ("initializer", [t.name for t in graph.initializer]),
        ("graph output", [v.name for v in graph.output]),
    ]:
        twice = next((name for name, n in Counter(declared).items() if n > 1), None)
        if twice is not None:
            raise InputError(f"{kind} {twice!r} is declared {Counter(declared)[twice]} times")
    inputs = {v.name: v.type.tensor_type for v in graph.input}
    for init in graph.initializer:
        declared_type = inputs.get(init.name)
        if declared_type is None:
            continue
        if declared_type.elem_type and declared_type.elem_type != init.data_type:
            raise InputError(
                f"initializer {init.name!r} has element type "
                f"{onnx.TensorProto.DataType.Name(init.data_type)} but the graph input of that "
                f"name declares {onnx.TensorProto.DataType.Name(declared_type.elem_type)}"
            )
        dims = [d.dim_value if d.HasField("dim_value") else None for d in declared_type.shape.dim]
        if declared_type.HasField("shape") and (
            len(dims) != len(init.dims)
            or any(d is not None and d != i for d, i in zip(dims, init.dims, strict=True))
        ):
            shown = [d if d is not None else "?" for d in dims]
            raise InputError(
                f"initializer {init.name!r} has shape {list(init.dims)} but the graph input "
                f"of that name declares {shown}"
            )


def _check_structure(graph: onnx.GraphProto, names: list[str]) -> None:
    """Names are declared once, every read tensor has one source, and there is no cycle."""
    _check_names(graph)
    source: dict[str, str] = {v.name: "graph input" for v in graph.input}
    source.update((t.name, "initializer") for t in graph.initializer)
    producer: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for output in node.output:
            if not output:
                continue
            if output in producer or output in source:
                first = source.get(output) or f"node {names[producer[output]]!r}"
                raise InputError(
                    f"tensor {output!r} is written twice (by {first} and node {names[index]!r})"
                )
            producer[output] = index
    order = nx.DiGraph()
    order.add_nodes_from(range(len(graph.node)))
    for index, node in enumerate(graph.node):
        reads = list(node.input) + [n for sub in _subgraphs(node) for n in _outer_references(sub)]
        for name in reads:
            if not name:
                continue
            if name in producer:
                order.add_edge(producer[name], index)
            elif name not in source:
                raise InputError(
                    f"node {names[index]!r} ({node.op_type}) reads tensor {name!r}, "
                    "which no node, graph input or initializer provides"
                )
    for output in graph.output:
        if output.name not in producer and output.name not in source:
            raise InputError(f"graph output {output.name!r} is not produced by any node")
    if not nx.is_directed_acyclic_graph(order):
        cycle = [names[edge[0]] for edge in nx.find_cycle(order)]
        raise InputError(f"the graph has a cycle: {' -> '.join([*cycle, cycle[0]])}")


def _bind(graph: onnx.GraphProto, dims: dict[str, int], shapes: dict[str, tuple[int, ...]]) -> None:
    """Replace symbolic dimensions by ``dims`` and set the shapes the user gave."""
    symbols = {
        d.dim_param
        for value in [*graph.input, *graph.output, *graph.value_info]
        for d in value.type.tensor_type.shape.dim
        if d.dim_param
    }
    unknown = sorted(set(dims) - symbols)
    if unknown:
        listed = ", ".join(sorted(symbols)) or "none"
        raise InputError(
            f"--dim {unknown[0]!r} is not a dimension of this model (its symbolic dimensions: {listed})"
        )
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for d in value.type.tensor_type.shape.dim:
            if d.dim_param in dims:
                d.dim_value = dims[d.dim_param]
    values = {v.name: v for v in [*graph.input, *graph.value_info]}
    produced = {name for node in graph.node for name in node.output}
    for name, shape in shapes.items():
        value = values.get(name)
        if value is None:
            if name not in produced:
                raise InputError(
                    f"--input-shape names {name!r}, which is not a tensor of this model"
                )
            value = graph.value_info.add()
            value.name = name
        # A graph output's declared type is set too: it is the one the IR is built from.
        for declared in [value, *(v for v in graph.output if v.name == name)]:
            tensor_type = declared.type.tensor_type
            tensor_type.ClearField("shape")
            tensor_type.shape.dim.extend(
                onnx.TensorShapeProto.Dimension(dim_value=d) for d in shape
            )


_INFERENCE_ERRORS = (
    onnx.shape_inference.InferenceError,
    onnx.checker.ValidationError,
    RuntimeError,
)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except _INFERENCE_ERRORS as error:
        raise InputError(f"ONNX shape inference failed: {_first_line(error)}") from None


def _fold_shapes(model: onnx.ModelProto) -> None:
    try:
        fold_shapes(model, _opset(model))
    except _INFERENCE_ERRORS as error:
        raise InputError(
            f"ONNX shape inference failed once shape computations were folded: {_first_line(error)}"
        ) from None


def _lower(graph: onnx.GraphProto, ir: IRGraph) -> None:
    types = {v.name: v.type for v in [*graph.input, *graph.value_info, *graph.output]}
    initializers = {t.name: t for t in graph.initializer}
    outputs = {v.name for v in graph.output}
    producer_of = {
        name: (node, slot) for node in graph.node for slot, name in enumerate(node.output) if name
    }
    model_dims = {
        d.dim_param
        for v in graph.input
        if v.name not in initializers
        for d in v.type.tensor_type.shape.dim
        if d.dim_param
    }
    _check_all_dims_bound(graph, set(initializers))
    for value in graph.input:
        if value.name not in initializers:
            _check_bound(value.name, types[value.name], model_dims, None)

    constants = _integer_constants(graph)

    def add(name: str, kind: TensorKind) -> None:
        if name in initializers:
            init = initializers[name]
            shape, elem_type = tuple(int(d) for d in init.dims), init.data_type
        else:
            shape, elem_type = _static_shape(
                name, types.get(name), model_dims, producer_of.get(name)
            )
        tensor = _tensor(name, kind, shape, elem_type, name in outputs)
        tensor.value = constants.get(name)
        ir.add_tensor(tensor)

    for name in initializers:
        add(name, "weight")
    for value in graph.input:
        if value.name not in initializers:
            add(value.name, "input")
    for node in graph.node:
        for name in node.output:
            if name:
                add(name, "output" if name in outputs else "activation")
    for index, node in enumerate(graph.node):
        ir.add_operator(
            Operator(
                name=node.name,
                op_type=node.op_type,
                domain=node.domain,
                inputs=list(node.input),
                outputs=list(node.output),
                implicit_inputs=[n for n in _outer_references_of(node) if n not in set(node.input)],
                attributes=_attributes(node),
                index=index,
            )
        )


def _integer_constants(graph: onnx.GraphProto) -> dict[str, list[int]]:
    """Small integer constants whose values are in the file (see ``Tensor.value``)."""
    tensors = {t.name: t for t in graph.initializer}
    constants: dict[str, list[int]] = {}
    for node in graph.node:
        if node.op_type != "Constant" or node.domain or not node.output:
            continue
        for attribute in node.attribute:
            if attribute.name == "value":
                tensors[node.output[0]] = attribute.t
            elif attribute.name == "value_int":
                constants[node.output[0]] = [attribute.i]
            elif attribute.name == "value_ints":
                constants[node.output[0]] = list(attribute.ints)
    for name, tensor in tensors.items():
        external = tensor.external_data or tensor.data_location == onnx.TensorProto.EXTERNAL
        if external or math.prod(tensor.dims) > MAX_CONSTANT_ELEMENTS:
            continue
        try:
            array = numpy_helper.to_array(tensor)
        except (ValueError, TypeError):  # a type numpy cannot hold, or inconsistent data
            continue
        if array.dtype.kind in "iu":
            constants[name] = [int(v) for v in array.ravel()]
    return {name: v for name, v in constants.items() if len(v) <= MAX_CONSTANT_ELEMENTS}


def _type_user_shapes(graph: onnx.GraphProto, names: set[str]) -> bool:
    """Give user-shaped outputs of untyped operators their first input's element type.

    A shape given with ``--input-shape`` carries no element type; for the output of
    an operator inference does not know, the first input's type is the best guess.
    Returns True when a type was filled in (inference must run again).
    """
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info]}
    types.update((t.name, t.data_type) for t in graph.initializer)
    producers = {name: node for node in graph.node for name in node.output}
    filled = False
    for value in graph.value_info:
        tensor_type = value.type.tensor_type
        if value.name in names and not tensor_type.elem_type and value.name in producers:
            known = [types[n] for n in producers[value.name].input if types.get(n)]
            if known:
                tensor_type.elem_type = known[0]
                filled = True
    return filled


def _outer_references_of(node: onnx.NodeProto) -> list[str]:
    return list(dict.fromkeys(n for sub in _subgraphs(node) for n in _outer_references(sub)))


def _check_all_dims_bound(graph: onnx.GraphProto, initializers: set[str]) -> None:
    """One error naming every unbound symbolic dimension of the graph inputs, so that a
    model with several (``batch``, ``sequence``) needs one corrected run, not one per name."""
    unbound = sorted(
        {
            d.dim_param
            for v in graph.input
            if v.name not in initializers
            for d in v.type.tensor_type.shape.dim
            if d.dim_param and not d.HasField("dim_value")
        }
    )
    if len(unbound) > 1:
        names = ", ".join(repr(name) for name in unbound)
        flags = " ".join(f"--dim {name}=VALUE" for name in unbound)
        raise InputError(f"symbolic dimensions {names} are not bound; give them with {flags}")


def _check_bound(
    name: str, value_type: onnx.TypeProto, model_dims: set[str], origin: str | None
) -> None:
    for d in value_type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            if d.dim_value < 0:
                raise InputError(f"tensor {name!r} has a negative dimension ({d.dim_value})")
            continue
        if d.dim_param in model_dims or origin is None:
            symbol = d.dim_param or "?"
            raise InputError(
                f"symbolic dimension {symbol!r} (of tensor {name!r}) is not bound; "
                f"give it with --dim {symbol}=VALUE"
                if d.dim_param
                else f"graph input {name!r} has an unknown dimension; give its shape with --input-shape {name}:D1,D2,..."
            )
        raise InputError(
            f"cannot infer a static shape for {name!r} ({origin}): it depends on data or on an "
            f"unsupported operator; give it with --input-shape {name}:D1,D2,..."
        )


def _static_shape(
    name: str,
    value_type: onnx.TypeProto | None,
    model_dims: set[str],
    produced_by: tuple[onnx.NodeProto, int] | None,
) -> tuple[tuple[int, ...], int]:
    origin = None
    if produced_by is not None:
        node, slot = produced_by
        origin = f"output {slot} of {node.op_type} node {node.name!r}"
    if value_type is None or not value_type.HasField("tensor_type"):
        kind = "a non-tensor type" if value_type is not None else "no inferred type"
        raise InputError(
            f"cannot plan {name!r} ({origin or 'graph input'}): {kind}; "
            f"give its shape with --input-shape {name}:D1,D2,..."
        )
    tensor_type = value_type.tensor_type
    if not tensor_type.HasField("shape"):
        raise InputError(
            f"cannot infer the shape of {name!r} ({origin or 'graph input'}); "
            f"give it with --input-shape {name}:D1,D2,..."
        )
    _check_bound(name, value_type, model_dims, origin)
    return tuple(d.dim_value for d in tensor_type.shape.dim), tensor_type.elem_type


def _dtype_name(elem_type: int) -> str:
    """The IR's ``Tensor.dtype`` for an ONNX element type (numpy's name where numpy has one)."""
    type_name = _TYPE_NAMES.get(elem_type, "?")
    np_type = helper.tensor_dtype_to_np_dtype(elem_type)
    sub_byte = type_name in _SUB_BYTE_BITS
    return type_name.lower() if sub_byte or np_type == np.dtype(object) else np_type.name


def onnx_element_type(dtype: str) -> int:
    """The ONNX element type of an IR ``Tensor.dtype`` (the inverse of the frontend's naming)."""
    return _element_types()[dtype]


@functools.cache
def _element_types() -> dict[str, int]:
    sizeless = (onnx.TensorProto.UNDEFINED, onnx.TensorProto.STRING)
    return {_dtype_name(number): number for number in _TYPE_NAMES if number not in sizeless}


def _tensor(
    name: str, kind: TensorKind, shape: tuple[int, ...], elem_type: int, is_output: bool
) -> Tensor:
    if any(d < 0 for d in shape):
        raise InputError(f"tensor {name!r} has a negative dimension in shape {list(shape)}")
    type_name = _TYPE_NAMES.get(elem_type, "?")
    if elem_type in (onnx.TensorProto.UNDEFINED, onnx.TensorProto.STRING) or type_name == "?":
        raise InputError(f"tensor {name!r} has element type {type_name}, which has no fixed size")
    bits = _SUB_BYTE_BITS.get(type_name)
    np_type = helper.tensor_dtype_to_np_dtype(elem_type)
    elements = math.prod(shape)  # exact (Python ints): a product past int64 is caught below
    nbytes = (elements * bits + 7) // 8 if bits else elements * np_type.itemsize
    if nbytes > MAX_BYTES:
        raise InputError(
            f"tensor {name!r} declares {nbytes} bytes (shape {list(shape)}), more than any target can hold"
        )
    dtype = _dtype_name(elem_type)
    return Tensor(
        name=name, dtype=dtype, shape=shape, nbytes=nbytes, kind=kind, graph_output=is_output
    )


def _attributes(node: onnx.NodeProto) -> dict[str, AttributeValue]:
    simple = {
        onnx.AttributeProto.INT,
        onnx.AttributeProto.FLOAT,
        onnx.AttributeProto.STRING,
        onnx.AttributeProto.INTS,
        onnx.AttributeProto.FLOATS,
        onnx.AttributeProto.STRINGS,
    }
    values: dict[str, AttributeValue] = {}
    for attribute in node.attribute:
        if attribute.type not in simple:
            continue
        value = helper.get_attribute_value(attribute)
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        elif isinstance(value, list):
            value = [v.decode(errors="replace") if isinstance(v, bytes) else v for v in value]
        values[attribute.name] = value
    return values
