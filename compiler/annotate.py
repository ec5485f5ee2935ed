"""The annotated model: the source ONNX graph with the plan written on it, for Netron.

Netron shows a node's ``doc_string`` and ``metadata_props``, and only the
``doc_string`` of intermediate tensors. So every node and tensor gets a one-line
human summary in ``doc_string`` (``tier=DDR offset=0x4000 bytes=64KiB live=[3,9]``)
and the same facts under namespaced ``metadata_props`` keys (``tierplan.tier``,
``tierplan.offset`` ...). Weight bytes are not copied: external-data references
are kept, re-pointed relative to the folder the annotated model is written to.

When a pass rewrote the graph (inserted operators other than device transfers, or
removed some), the annotated model holds the rewritten graph, in schedule order,
with a typed ``value_info`` for every new tensor: onnxruntime runs it unchanged.
Device copies stay out of it (``Transfer`` is no ONNX operator): readers of a copy
read the original.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper, helper, numpy_helper
from tierplan.compiler.frontend import onnx_element_type
from tierplan.compiler.ir import TRANSFER_OP, IRGraph, Operator, Tensor

PREFIX = "tierplan."


def human_bytes(count: int) -> str:
    """``65536`` -> ``"64KiB"``; exact, in the largest unit that divides it evenly."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size and count % size == 0:
            return f"{count // size}{unit}"
    return f"{count}B"


def tensor_facts(tensor: Tensor, ir: IRGraph) -> dict[str, str]:
    """The plan facts of one tensor, as metadata strings (names as the plan gives them)."""
    facts = {"kind": tensor.kind, "bytes": str(tensor.nbytes), "dtype": tensor.dtype}
    if tensor.needs_buffer:
        facts.update(device=str(tensor.device), tier=str(tensor.tier), offset=str(tensor.offset))
        facts.update(start=str(tensor.start), end=str(tensor.end))
    if tensor.alias_of:
        facts["alias_of"] = ir.plan_name(tensor.alias_of)
    return facts


def tensor_summary(tensor: Tensor, ir: IRGraph) -> str:
    """One line for Netron, e.g. ``tier=DDR offset=0x4000 bytes=64KiB live=[3,9]``."""
    if not tensor.needs_buffer:
        return f"tierplan: no buffer (never read) bytes={human_bytes(tensor.nbytes)}"
    text = (
        f"tierplan: tier={tensor.tier} offset={tensor.offset or 0:#x} bytes={human_bytes(tensor.nbytes)} "
        f"live=[{tensor.start},{tensor.end}] device={tensor.device}"
    )
    return text + (f" alias_of={ir.plan_name(tensor.alias_of)}" if tensor.alias_of else "")


def operator_facts(op: Operator) -> dict[str, str]:
    """The plan facts of one operator, as metadata strings."""
    facts = {"step": str(op.step), "device": str(op.device)}
    if op.tiles is not None:
        facts["tiles"] = json.dumps(
            {"axes": op.tiles.axes, "count": op.tiles.count, "l1_bytes": op.tiles.l1_bytes,
             "traffic_bytes": op.tiles.traffic_bytes}
        )  # fmt: skip
    return facts


def _annotate(
    proto: onnx.NodeProto | onnx.ValueInfoProto | onnx.TensorProto,
    summary: str,
    facts: dict[str, str],
) -> None:
    kept = [line for line in proto.doc_string.splitlines() if not line.startswith("tierplan:")]
    proto.doc_string = "\n".join([summary, *kept])
    entries = [e for e in proto.metadata_props if not e.key.startswith(PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(entries)
    for key, value in facts.items():
        proto.metadata_props.add(key=PREFIX + key, value=value)


def _rewritten_nodes(graph: onnx.GraphProto, ir: IRGraph) -> list[onnx.NodeProto] | None:
    """The IR's operators as ONNX nodes, or None when no pass rewrote the graph."""
    ops = list(ir.operators())
    added = any(op.inserted and op.op_type != TRANSFER_OP for op in ops)
    if not added and all(ir.has_operator(node.name) for node in graph.node):
        return None
    originals = {node.name: node for node in graph.node}
    nodes = []
    for op in sorted(ops, key=lambda op: op.step if op.step is not None else len(ops)):
        if op.inserted and op.op_type == TRANSFER_OP:
            continue
        inputs = [ir.plan_name(name) for name in op.inputs]
        outputs = [ir.plan_name(name) for name in op.outputs]
        if op.inserted:
            node = helper.make_node(op.op_type, inputs, outputs, name=op.name)
            node.domain = op.domain
            node.attribute.extend(
                helper.make_attribute(key, value)
                for key, value in sorted(op.attributes.items())
                if value is not None
            )
        else:
            node = onnx.NodeProto()
            node.CopyFrom(originals[op.name])
            del node.input[:], node.output[:]
            node.input.extend(inputs)
            node.output.extend(outputs)
        nodes.append(node)
    return nodes


def _retype_weight(initializer: onnx.TensorProto, dtype: str) -> None:
    """Store a weight a pass retyped (``precision{weights=float16}``) in its new type.

    Values inside the file are converted (rounded to nearest, clipped to the new
    type's finite range). An external weight is only declared in the new type: its
    file is never opened, so its bytes there stay the source's until converted.
    """
    code = onnx_element_type(dtype)
    if external_data_helper.uses_external_data(initializer):
        initializer.data_type = code
        return
    values = numpy_helper.to_array(initializer)
    target = helper.tensor_dtype_to_np_dtype(code)
    limit = float(np.finfo(target).max)
    converted = numpy_helper.from_array(
        np.clip(values, -limit, limit).astype(target), initializer.name
    )
    initializer.CopyFrom(converted)


def annotate_model(
    model: onnx.ModelProto, ir: IRGraph, source_dir: Path, out_dir: Path
) -> onnx.ModelProto:
    """A copy of ``model`` with the IR's plan facts on every node and tensor."""
    annotated = onnx.ModelProto()
    annotated.CopyFrom(model)
    graph = annotated.graph
    rewritten = _rewritten_nodes(graph, ir)
    if rewritten is not None:
        del graph.node[:]
        graph.node.extend(rewritten)
        current = [value for value in graph.value_info if ir.has_tensor(value.name)]
        del graph.value_info[:]
        graph.value_info.extend(current)
    for node in graph.node:
        if ir.has_operator(node.name):
            op = ir.operator(node.name)
            tiles = "" if op.tiles is None else f" tiles={op.tiles.count}"
            _annotate(
                node, f"tierplan: step={op.step} device={op.device}{tiles}", operator_facts(op)
            )
    described = set()
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if ir.has_tensor(value.name):
            tensor = ir.tensor(value.name)
            value.type.tensor_type.elem_type = onnx_element_type(tensor.dtype)  # a pass may retype
            _annotate(value, tensor_summary(tensor, ir), tensor_facts(tensor, ir))
            described.add(value.name)
    for initializer in graph.initializer:
        tensor = ir.tensor(initializer.name)
        if onnx_element_type(tensor.dtype) != initializer.data_type:
            _retype_weight(initializer, tensor.dtype)
        _annotate(initializer, tensor_summary(tensor, ir), tensor_facts(tensor, ir))
        for entry in initializer.external_data:
            if entry.key == "location" and not os.path.isabs(entry.value):
                entry.value = os.path.relpath(source_dir / entry.value, out_dir)
    for tensor in ir.tensors():
        # Weights are initializers; scratch tiles and device copies are no ONNX values.
        if (
            tensor.name not in described
            and tensor.kind not in ("weight", "scratch")
            and not tensor.copy_of
        ):
            value = graph.value_info.add()
            value.name = tensor.name
            value.type.CopyFrom(
                helper.make_tensor_type_proto(onnx_element_type(tensor.dtype), tensor.shape)
            )
            _annotate(value, tensor_summary(tensor, ir), tensor_facts(tensor, ir))
    entries = [e for e in annotated.metadata_props if not e.key.startswith(PREFIX)]
    del annotated.metadata_props[:]
    annotated.metadata_props.extend(entries)
    annotated.metadata_props.add(key=PREFIX + "plan", value="plan.json")
    return annotated
