"""Hand-built plans for small models: alias groups, slice views and concat parts.

Each :class:`HandPlan` is a model (its ONNX order is the schedule), the placement of
every buffer in one DDR region, and what ``tierplan check`` must say of the plan
(``rule`` None: valid). The compiler emits no slice views or concat parts yet, and
no plan that breaks the alias-group rule, so these plans are written by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tierplan.compiler.frontend import load_model
from tierplan.compiler.plan import PlanBuffer, memory_summary

Plan = dict[str, Any]

Placement = tuple[str, int, int, int, str | None]
"""A buffer of a hand-built plan: (tensor, offset, start, end, alias_of); one region, DDR."""


def save_model(path: Path, nodes: list[Any], inputs: dict[str, list[int]]) -> Path:
    """A float model of ``nodes`` (ONNX order = schedule); outputs: tensors nobody reads."""
    read = {name for node in nodes for name in node.input}
    made = [name for node in nodes for name in node.output if name not in read]
    graph = helper.make_graph(
        nodes,
        "hand",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in made],
        initializer=[
            numpy_helper.from_array(np.array(value, dtype=np.int64), name)
            for name, value in CONSTANTS.items()
            if name in read
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(onnx.shape_inference.infer_shapes(model), path)
    return path


CONSTANTS: dict[str, Any] = {"one": 1, "two": 2, "rows_1_3": [1], "rows_end": [3], "axis0": [0]}


def hand_plan(model: Path, placements: list[Placement]) -> Plan:
    """The plan that runs ``model`` in ONNX order with ``placements`` (weights added at
    4 KiB and up), summary included."""
    ir = load_model(model).ir
    ops = list(ir.operators())
    weights = [t.name for t in ir.tensors() if t.kind == "weight"]
    placements = [
        *placements,
        *((name, 4096 + 64 * i, 0, len(ops) - 1, None) for i, name in enumerate(weights)),
    ]
    buffers = [
        {"tensor": name, "kind": ir.tensor(name).kind, "bytes": ir.tensor(name).nbytes,
         "device": 0, "tier": "DDR", "offset": offset, "start": start, "end": end,
         "alias_of": alias}
        for name, offset, start, end, alias in placements
    ]  # fmt: skip
    entries = [
        {"node": op.name, "op_type": op.op_type, "device": 0, "step": step,
         "inputs": op.inputs, "outputs": op.outputs, "tiles": None}
        for step, op in enumerate(ops)
    ]  # fmt: skip
    peaks, bounds = memory_summary(PlanBuffer.of_entries(buffers))
    return {
        "format": "tierplan-plan/1",
        "model": {"path": str(model), "sha256": ir.model.sha256},
        "target": {
            "name": "hand",
            "alignment": 64,
            "devices": 1,
            "tiers": [{"name": "DDR", "capacity": 2**20, "bandwidth": 1e12, "latency": 1e-7}],
        },
        "schedule": [op.name for op in ops],
        "buffers": buffers,
        "ops": entries,
        "summary": {"peak_bytes": peaks, "lower_bound_bytes": bounds},
    }


def node(op_type: str, inputs: list[str], outputs: list[str], **attributes: Any) -> Any:
    return helper.make_node(op_type, inputs, outputs, name=outputs[0], **attributes)


ROW = [1, 16]  # 64 bytes of float: one aligned row
SPLIT_ROWS = [
    node("Neg", ["x"], ["a"]),
    helper.make_node("Split", ["a"], ["s0", "s1"], name="split", axis=0, num_outputs=2),
    node("Relu", ["s0"], ["y0"]),
    node("Sigmoid", ["s1"], ["y1"]),
]
CONCAT_COLUMNS = [
    node("Neg", ["x"], ["p"]),
    node("Sigmoid", ["x"], ["q"]),
    node("Concat", ["p", "q"], ["c"], axis=1),
    node("Relu", ["c"], ["y"]),
]
MATRIX = [4, 16]  # 256 bytes, rows of 64


@dataclass(frozen=True)
class HandPlan:
    """A model, a plan for it, and what ``tierplan check`` must say (rule None: valid)."""

    name: str
    nodes: list[Any]
    inputs: dict[str, list[int]]
    placements: list[Placement]
    rule: str | None = None
    culprits: tuple[str, ...] = ()


HAND_PLANS = [
    HandPlan(
        "in_place_write_under_a_live_view",  # the plan of issue 12
        [node("Neg", ["x"], ["a"]), node("Identity", ["a"], ["v"]),
         node("Relu", ["a"], ["r"]), node("Add", ["v", "r"], ["y"])],
        {"x": ROW},
        [("x", 0, 0, 0, None), ("a", 64, 0, 2, None), ("v", 64, 1, 3, "a"),
         ("r", 64, 2, 3, "a"), ("y", 128, 3, 3, None)],
        "alias-group", ("'r'", "'v'", "read at step 3"),
    ),
    HandPlan(
        "in_place_write_under_a_view_of_a_view",
        [node("Neg", ["x"], ["a"]), node("Identity", ["a"], ["v"]),
         node("Flatten", ["v"], ["w"]), node("Relu", ["a"], ["r"]),
         node("Add", ["w", "r"], ["y"])],
        {"x": ROW},
        [("x", 0, 0, 0, None), ("a", 64, 0, 3, None),
         ("v", 64, 1, 2, "a"), ("w", 64, 2, 4, "v"), ("r", 64, 3, 4, "a"),
         ("y", 128, 4, 4, None)],
        "alias-group", ("'r'", "'w'", "read at step 4"),
    ),
    HandPlan(
        "in_place_write_on_a_view_under_its_source",
        [node("Neg", ["x"], ["a"]), node("Identity", ["a"], ["v"]),
         node("Relu", ["v"], ["r"]), node("Add", ["a", "r"], ["y"])],
        {"x": ROW},
        [("x", 0, 0, 0, None), ("a", 64, 0, 3, None), ("v", 64, 1, 2, "a"),
         ("r", 64, 2, 3, "v"), ("y", 128, 3, 3, None)],
        "alias-group", ("'r'", "'a'", "read at step 3"),
    ),
    HandPlan(
        "second_in_place_write_under_a_view_of_the_first",
        [node("Neg", ["x"], ["a"]), node("Relu", ["a"], ["b"]),
         node("Identity", ["b"], ["v"]), node("Sigmoid", ["b"], ["c"]),
         node("Add", ["v", "c"], ["y"])],
        {"x": ROW},
        [("x", 0, 0, 0, None), ("a", 64, 0, 1, None), ("b", 64, 1, 3, "a"),
         ("v", 64, 2, 4, "b"), ("c", 64, 3, 4, "b"), ("y", 128, 4, 4, None)],
        "alias-group", ("'c'", "'v'", "read at step 4"),
    ),
    HandPlan(
        "in_place_write_under_a_view_without_buffer",  # its readers need the source live
        [node("Neg", ["x"], ["a"]), node("Identity", ["a"], ["v"]),
         node("Relu", ["a"], ["r"]), node("Add", ["v", "r"], ["y"])],
        {"x": ROW},
        [("x", 0, 0, 0, None), ("a", 64, 0, 2, None), ("r", 64, 2, 3, "a"),
         ("y", 128, 3, 3, None)],
        "lifetime", ("'a'", "view 'v' read at step 3"),
    ),
    HandPlan(
        "in_place_write_after_the_view_is_done",
        [node("Neg", ["x"], ["a"]), node("Identity", ["a"], ["v"]),
         node("Sigmoid", ["v"], ["s"]), node("Relu", ["a"], ["r"]),
         node("Add", ["s", "r"], ["y"])],
        {"x": ROW},
        [("x", 0, 0, 0, None), ("a", 64, 0, 3, None), ("v", 64, 1, 2, "a"),
         ("s", 128, 2, 4, None), ("r", 64, 3, 4, "a"), ("y", 192, 4, 4, None)],
    ),
    HandPlan(
        "split_parts_are_slice_views",
        SPLIT_ROWS,
        {"x": [2, 3]},  # rows of 12 bytes: the second part sits unaligned
        [("x", 0, 0, 0, None), ("a", 64, 0, 1, None), ("s0", 64, 1, 2, "a"),
         ("s1", 76, 1, 3, "a"), ("y0", 128, 2, 3, None), ("y1", 192, 3, 3, None)],
    ),
    HandPlan(
        "split_part_at_the_wrong_bytes",
        SPLIT_ROWS,
        {"x": [2, 3]},
        [("x", 0, 0, 0, None), ("a", 64, 0, 1, None), ("s0", 64, 1, 2, "a"),
         ("s1", 256, 1, 3, "a"), ("y0", 128, 2, 3, None), ("y1", 192, 3, 3, None)],
        "alias", ("'s1'", "at 76 (slice view) or 64 (in place)"),
    ),
    HandPlan(
        "split_along_an_inner_axis_is_no_slice_view",
        [node("Neg", ["x"], ["a"]),
         helper.make_node("Split", ["a"], ["s0", "s1"], name="split", axis=1, num_outputs=2),
         node("Relu", ["s0"], ["y0"]), node("Sigmoid", ["s1"], ["y1"])],
        {"x": [2, 4]},
        [("x", 0, 0, 0, None), ("a", 64, 0, 1, None), ("s0", 64, 1, 2, "a"),
         ("s1", 80, 1, 3, "a"), ("y0", 128, 2, 3, None), ("y1", 192, 3, 3, None)],
        "alias", ("'s1'", "puts it at 64 (in place)"),
    ),
    HandPlan(
        "slice_rows_and_gather_a_row",
        [node("Neg", ["x"], ["a"]),
         node("Slice", ["a", "rows_1_3", "rows_end", "axis0"], ["t"]),
         node("Gather", ["a", "two"], ["g"]), node("Relu", ["t"], ["y0"]),
         node("Sigmoid", ["g"], ["y1"])],
        {"x": MATRIX},
        [("x", 0, 0, 0, None), ("a", 256, 0, 2, None), ("t", 320, 1, 3, "a"),
         ("g", 384, 2, 4, "a"), ("y0", 512, 3, 4, None), ("y1", 640, 4, 4, None)],
    ),
    HandPlan(
        "gather_index_from_a_constant_node",
        [helper.make_node("Constant", [], ["idx"], name="idx",
                          value=numpy_helper.from_array(np.array(1, dtype=np.int64))),
         node("Neg", ["x"], ["a"]), node("Gather", ["a", "idx"], ["g"]),
         node("Sigmoid", ["g"], ["y"])],
        {"x": MATRIX},
        [("x", 0, 0, 1, None), ("idx", 256, 0, 2, None), ("a", 320, 1, 2, None),
         ("g", 384, 2, 3, "a"), ("y", 640, 3, 3, None)],
    ),
    HandPlan(
        "gathered_row_at_the_wrong_bytes",
        [node("Neg", ["x"], ["a"]), node("Gather", ["a", "one"], ["g"]),
         node("Sigmoid", ["g"], ["y"])],
        {"x": MATRIX},
        [("x", 0, 0, 0, None), ("a", 256, 0, 1, None), ("g", 384, 1, 2, "a"),
         ("y", 576, 2, 2, None)],
        "alias", ("'g'", "320 (slice view)"),
    ),
    HandPlan(
        "concat_parts_written_in_place",
        CONCAT_COLUMNS,
        {"x": [1, 5]},  # parts of 20 bytes: q sits unaligned
        [("x", 0, 0, 1, None), ("p", 64, 0, 2, "c"), ("q", 84, 1, 2, "c"),
         ("c", 64, 2, 3, None), ("y", 128, 3, 3, None)],
    ),
    HandPlan(
        "concat_part_at_the_wrong_bytes",
        CONCAT_COLUMNS,
        {"x": [1, 5]},
        [("x", 0, 0, 1, None), ("p", 64, 0, 2, "c"), ("q", 64, 1, 2, "c"),
         ("c", 64, 2, 3, None), ("y", 128, 3, 3, None)],
        "alias", ("'q'", "84 (concat part)"),
    ),
    HandPlan(
        "in_place_write_on_a_concat_under_a_live_part",
        [node("Neg", ["x"], ["p"]), node("Sigmoid", ["x"], ["q"]),
         node("Concat", ["p", "q"], ["c"], axis=1), node("Relu", ["c"], ["r"]),
         node("Tanh", ["p"], ["t"])],
        {"x": [1, 16]},
        [("x", 0, 0, 1, None), ("p", 64, 0, 4, "c"), ("q", 128, 1, 2, "c"),
         ("c", 64, 2, 3, None), ("r", 64, 3, 3, "c"), ("t", 256, 4, 4, None)],
        "alias-group", ("'r'", "'p'", "read at step 4"),
    ),
]  # fmt: skip
