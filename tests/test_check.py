"""``tierplan check MODEL PLAN`` rejects hand-broken plans, naming the rule and the culprits.

A small model is compiled once per module; each test deep-copies its plan, breaks
one rule of ``plan-format.md``, writes it and runs the CLI in-process. Breakages
pick their victims from the plan itself (live-together pairs, readers, ...) so they
keep working if the packer or the scheduler changes its choices.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tierplan.compiler import compile_model, validate_plan
from tierplan.compiler.cli import main
from tierplan.compiler.frontend import load_model
from tierplan.compiler.plan import memory_summary

from tests.byte_owners import corrupted_reads

MODEL = Path(__file__).resolve().parents[1] / "models" / "synthetic" / "diamond.onnx"

Plan = dict[str, Any]
Buffer = dict[str, Any]
Breakage = Callable[[Plan], tuple[str, list[str]]]
"""Breaks a plan in place; returns the rule id and the names its message must contain."""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Plan, Path]:
    """The model's plan (as data) and the plan.json the compiler wrote for it.

    Compiled without ``inplace``, so that every activation has bytes of its own and
    each breakage below has exactly the effect its test describes.
    """
    result = compile_model(MODEL, passes="schedule,liveness,pack,evaluate")
    plan_path, _ = result.write(tmp_path_factory.mktemp("compiled"))
    return copy.deepcopy(result.plan), plan_path


@pytest.fixture
def plan(compiled: tuple[Plan, Path]) -> Plan:
    """A fresh deep copy of the compiled plan, free to break."""
    return copy.deepcopy(compiled[0])


# -- helpers --------------------------------------------------------------------------


def _write(plan: Plan | Any, path: Path) -> Path:
    path.write_text(json.dumps(plan, indent=1))
    return path


def _check(capsys: pytest.CaptureFixture[str], plan_path: Path) -> tuple[int, str]:
    code = main(["check", str(MODEL), str(plan_path)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


def _activations(plan: Plan) -> list[Buffer]:
    return [b for b in plan["buffers"] if b["kind"] == "activation" and b["alias_of"] is None]


def _capacity(plan: Plan, tier: str) -> int:
    return int(next(t["capacity"] for t in plan["target"]["tiers"] if t["name"] == tier))


def _live_together(plan: Plan) -> tuple[Buffer, Buffer]:
    """Two activations in one region, alive together at different offsets.

    They share more than a boundary step, so putting one at the other's offset can
    never be a legal in-place reuse (which starts where the aliased buffer ends).
    """
    for a, b in itertools.combinations(_activations(plan), 2):
        same_region = (a["device"], a["tier"]) == (b["device"], b["tier"])
        common_step = max(a["start"], b["start"]) < min(a["end"], b["end"])
        fits = a["offset"] + b["bytes"] <= _capacity(plan, b["tier"])
        if same_region and common_step and a["offset"] != b["offset"] and fits:
            return a, b
    raise AssertionError("the test model has no two activations alive together")


def _last_read(plan: Plan, tensor: str) -> int:
    return int(max(op["step"] for op in plan["ops"] if tensor in op["inputs"]))


# -- breakages ------------------------------------------------------------------------


def overlap(plan: Plan) -> tuple[str, list[str]]:
    a, b = _live_together(plan)
    b["offset"] = a["offset"]
    return "overlap", [a["tensor"], b["tensor"]]


def misaligned(plan: Plan) -> tuple[str, list[str]]:
    b = next(
        b for b in _activations(plan) if b["offset"] + 1 + b["bytes"] <= _capacity(plan, b["tier"])
    )
    b["offset"] += 1
    return "alignment", [b["tensor"], str(b["offset"])]


def over_capacity(plan: Plan) -> tuple[str, list[str]]:
    b = _activations(plan)[0]
    alignment = plan["target"]["alignment"]
    capacity = _capacity(plan, b["tier"])
    b["offset"] = -(-capacity // alignment) * alignment  # aligned, at or past the end
    return "capacity", [b["tensor"], b["tier"], str(capacity)]


def missing_operator(plan: Plan) -> tuple[str, list[str]]:
    name = plan["schedule"].pop()
    plan["ops"] = [op for op in plan["ops"] if op["node"] != name]
    return "schedule", [name]


def not_topological(plan: Plan) -> tuple[str, list[str]]:
    ops = {op["node"]: op for op in plan["ops"]}
    schedule = plan["schedule"]
    for step in range(len(schedule) - 1):
        writer, reader = ops[schedule[step]], ops[schedule[step + 1]]
        shared = [t for t in writer["outputs"] if t in reader["inputs"]]
        if shared:
            schedule[step], schedule[step + 1] = reader["node"], writer["node"]
            reader["step"], writer["step"] = step, step + 1
            return "topological", [reader["node"], shared[0]]
    raise AssertionError("no two consecutive dependent operators")


def lifetime_too_short(plan: Plan) -> tuple[str, list[str]]:
    b = max(_activations(plan), key=lambda b: _last_read(plan, b["tensor"]) - b["start"])
    b["end"] = _last_read(plan, b["tensor"]) - 1
    assert b["end"] >= b["start"]
    return "lifetime", [b["tensor"]]


def wrong_bytes(plan: Plan) -> tuple[str, list[str]]:
    alignment = plan["target"]["alignment"]
    b = next(b for b in _activations(plan) if b["bytes"] > alignment)
    true_bytes = b["bytes"]
    b["bytes"] -= alignment
    return "bytes", [b["tensor"], str(true_bytes), str(b["bytes"])]


def wrong_kind(plan: Plan) -> tuple[str, list[str]]:
    b = _activations(plan)[0]
    b["kind"] = "weight"
    return "kind", [b["tensor"], "'weight'", "'activation'"]


def alias_hiding_overlap(plan: Plan) -> tuple[str, list[str]]:
    """Two live-together tensors at one offset, 'excused' by an alias that is no reuse."""
    a, b = _live_together(plan)
    b["offset"], b["alias_of"] = a["offset"], a["tensor"]
    return "alias", [b["tensor"], a["tensor"]]


def alias_of_nothing(plan: Plan) -> tuple[str, list[str]]:
    b = _activations(plan)[0]
    b["alias_of"] = "no_such_tensor"
    return "alias", [b["tensor"], "no_such_tensor"]


def summary_peak_wrong(plan: Plan) -> tuple[str, list[str]]:
    key = next(iter(plan["summary"]["peak_bytes"]))
    plan["summary"]["peak_bytes"][key] += plan["target"]["alignment"]
    return "summary", ["peak_bytes", key]


def other_model(plan: Plan) -> tuple[str, list[str]]:
    plan["model"]["sha256"] = "0" * 64
    return "model", ["0" * 64]


BREAKAGES: list[Breakage] = [
    overlap,
    misaligned,
    over_capacity,
    missing_operator,
    not_topological,
    lifetime_too_short,
    wrong_bytes,
    wrong_kind,
    alias_hiding_overlap,
    alias_of_nothing,
    summary_peak_wrong,
    other_model,
]


# -- the CLI ----------------------------------------------------------------------------


def test_compiled_plan_is_valid(
    compiled: tuple[Plan, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _check(capsys, compiled[1])
    assert code == 0, err
    assert err == ""


def test_rewritten_unbroken_plan_is_valid(
    plan: Plan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan survives the test's own JSON round trip (so breakages are the only change)."""
    code, err = _check(capsys, _write(plan, tmp_path / "plan.json"))
    assert code == 0, err


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda f: f.__name__)
def test_broken_plan_is_rejected(
    breakage: Breakage, plan: Plan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule, names = breakage(plan)
    plan_path = _write(plan, tmp_path / "plan.json")
    code, err = _check(capsys, plan_path)
    assert code == 1, err
    lines = err.splitlines()
    assert all(line.startswith(f"{plan_path}: ") for line in lines), err
    assert lines[-1].endswith("violations)"), err
    culprits = [line for line in lines if f"[{rule}]" in line]
    assert culprits, f"no [{rule}] violation in:\n{err}"
    assert any(all(name in line for name in names) for line in culprits), (
        f"no [{rule}] line names all of {names}:\n{err}"
    )
    if breakage is alias_hiding_overlap:  # a bad alias excuses nothing
        assert "[overlap]" in err


def test_plan_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_path = tmp_path / "plan.json"
    plan_path.write_text('{"format": "tierplan-plan/1", ')
    code, err = _check(capsys, plan_path)
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("tierplan: error: ")
    assert "is not JSON" in err


@pytest.mark.parametrize("data", [[1, 2], "plan", 42, None], ids=repr)
def test_plan_json_but_not_object(
    data: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _check(capsys, _write(data, tmp_path / "plan.json"))
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("tierplan: error: ")
    assert "JSON object" in err


def test_buffers_lacking_fields(
    plan: Plan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = plan["buffers"][0]["tensor"]
    plan["buffers"] = [{"tensor": b["tensor"]} for b in plan["buffers"]]
    code, err = _check(capsys, _write(plan, tmp_path / "plan.json"))
    assert code == 1, err
    assert "[format]" in err
    assert any("[format]" in line and repr(first) in line for line in err.splitlines()), err


def test_buffers_not_objects(
    plan: Plan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan["buffers"] = [{}, 3, "x", None]
    code, err = _check(capsys, _write(plan, tmp_path / "plan.json"))
    assert code == 1, err
    assert err.count("[format]") == 4, err


def test_ops_entry_with_unhashable_node(
    plan: Plan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan["ops"][0]["node"] = [plan["ops"][0]["node"]]
    code, err = _check(capsys, _write(plan, tmp_path / "plan.json"))
    assert code == 1, err
    assert "internal error" not in err


# -- the Python API -------------------------------------------------------------------


def test_validate_plan_api(plan: Plan) -> None:
    ir = load_model(MODEL).ir
    assert validate_plan(copy.deepcopy(plan), ir, model_sha256=ir.model.sha256) == []
    _, names = overlap(plan)
    violations = validate_plan(plan, ir, model_sha256=ir.model.sha256)
    assert violations, "the overlap went unnoticed"
    assert {v.rule for v in violations} == {"overlap"}, violations
    assert any(all(repr(name) in v.message for name in names) for v in violations), violations
    assert all(str(v).startswith("[overlap] ") for v in violations)
    # Without a hash to compare, the model rule is not checked.
    plan["model"]["sha256"] = "0" * 64
    assert {v.rule for v in validate_plan(plan, ir)} == {"overlap"}


# -- hand-built plans: alias groups, slice views, concat parts ---------------------------

Placement = tuple[str, int, int, int, str | None]
"""A buffer of a hand-built plan: (tensor, offset, start, end, alias_of); one region, DDR."""


def _save_model(path: Path, nodes: list[Any], inputs: dict[str, list[int]]) -> Path:
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


def _hand_plan(model: Path, placements: list[Placement]) -> Plan:
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
    peaks, bounds = memory_summary(buffers)
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


def _node(op_type: str, inputs: list[str], outputs: list[str], **attributes: Any) -> Any:
    return helper.make_node(op_type, inputs, outputs, name=outputs[0], **attributes)


ROW = [1, 16]  # 64 bytes of float: one aligned row
SPLIT_ROWS = [
    _node("Neg", ["x"], ["a"]),
    helper.make_node("Split", ["a"], ["s0", "s1"], name="split", axis=0, num_outputs=2),
    _node("Relu", ["s0"], ["y0"]),
    _node("Sigmoid", ["s1"], ["y1"]),
]
CONCAT_COLUMNS = [
    _node("Neg", ["x"], ["p"]),
    _node("Sigmoid", ["x"], ["q"]),
    _node("Concat", ["p", "q"], ["c"], axis=1),
    _node("Relu", ["c"], ["y"]),
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
        [_node("Neg", ["x"], ["a"]), _node("Identity", ["a"], ["v"]),
         _node("Relu", ["a"], ["r"]), _node("Add", ["v", "r"], ["y"])],
        {"x": ROW},
        [("x", 0, 0, 0, None), ("a", 64, 0, 2, None), ("v", 64, 1, 3, "a"),
         ("r", 64, 2, 3, "a"), ("y", 128, 3, 3, None)],
        "alias-group", ("'r'", "'v'", "read at step 3"),
    ),
    HandPlan(
        "in_place_write_under_a_view_of_a_view",
        [_node("Neg", ["x"], ["a"]), _node("Identity", ["a"], ["v"]),
         _node("Flatten", ["v"], ["w"]), _node("Relu", ["a"], ["r"]),
         _node("Add", ["w", "r"], ["y"])],
        {"x": ROW},
        [("x", 0, 0, 0, None), ("a", 64, 0, 3, None),
         ("v", 64, 1, 2, "a"), ("w", 64, 2, 4, "v"), ("r", 64, 3, 4, "a"),
         ("y", 128, 4, 4, None)],
        "alias-group", ("'r'", "'w'", "read at step 4"),
    ),
    HandPlan(
        "in_place_write_on_a_view_under_its_source",
        [_node("Neg", ["x"], ["a"]), _node("Identity", ["a"], ["v"]),
         _node("Relu", ["v"], ["r"]), _node("Add", ["a", "r"], ["y"])],
        {"x": ROW},
        [("x", 0, 0, 0, None), ("a", 64, 0, 3, None), ("v", 64, 1, 2, "a"),
         ("r", 64, 2, 3, "v"), ("y", 128, 3, 3, None)],
        "alias-group", ("'r'", "'a'", "read at step 3"),
    ),
    HandPlan(
        "second_in_place_write_under_a_view_of_the_first",
        [_node("Neg", ["x"], ["a"]), _node("Relu", ["a"], ["b"]),
         _node("Identity", ["b"], ["v"]), _node("Sigmoid", ["b"], ["c"]),
         _node("Add", ["v", "c"], ["y"])],
        {"x": ROW},
        [("x", 0, 0, 0, None), ("a", 64, 0, 1, None), ("b", 64, 1, 3, "a"),
         ("v", 64, 2, 4, "b"), ("c", 64, 3, 4, "b"), ("y", 128, 4, 4, None)],
        "alias-group", ("'c'", "'v'", "read at step 4"),
    ),
    HandPlan(
        "in_place_write_under_a_view_without_buffer",  # its readers need the source live
        [_node("Neg", ["x"], ["a"]), _node("Identity", ["a"], ["v"]),
         _node("Relu", ["a"], ["r"]), _node("Add", ["v", "r"], ["y"])],
        {"x": ROW},
        [("x", 0, 0, 0, None), ("a", 64, 0, 2, None), ("r", 64, 2, 3, "a"),
         ("y", 128, 3, 3, None)],
        "lifetime", ("'a'", "view 'v' read at step 3"),
    ),
    HandPlan(
        "in_place_write_after_the_view_is_done",
        [_node("Neg", ["x"], ["a"]), _node("Identity", ["a"], ["v"]),
         _node("Sigmoid", ["v"], ["s"]), _node("Relu", ["a"], ["r"]),
         _node("Add", ["s", "r"], ["y"])],
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
        [_node("Neg", ["x"], ["a"]),
         helper.make_node("Split", ["a"], ["s0", "s1"], name="split", axis=1, num_outputs=2),
         _node("Relu", ["s0"], ["y0"]), _node("Sigmoid", ["s1"], ["y1"])],
        {"x": [2, 4]},
        [("x", 0, 0, 0, None), ("a", 64, 0, 1, None), ("s0", 64, 1, 2, "a"),
         ("s1", 80, 1, 3, "a"), ("y0", 128, 2, 3, None), ("y1", 192, 3, 3, None)],
        "alias", ("'s1'", "puts it at 64 (in place)"),
    ),
    HandPlan(
        "slice_rows_and_gather_a_row",
        [_node("Neg", ["x"], ["a"]),
         _node("Slice", ["a", "rows_1_3", "rows_end", "axis0"], ["t"]),
         _node("Gather", ["a", "two"], ["g"]), _node("Relu", ["t"], ["y0"]),
         _node("Sigmoid", ["g"], ["y1"])],
        {"x": MATRIX},
        [("x", 0, 0, 0, None), ("a", 256, 0, 2, None), ("t", 320, 1, 3, "a"),
         ("g", 384, 2, 4, "a"), ("y0", 512, 3, 4, None), ("y1", 640, 4, 4, None)],
    ),
    HandPlan(
        "gathered_row_at_the_wrong_bytes",
        [_node("Neg", ["x"], ["a"]), _node("Gather", ["a", "one"], ["g"]),
         _node("Sigmoid", ["g"], ["y"])],
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
        [_node("Neg", ["x"], ["p"]), _node("Sigmoid", ["x"], ["q"]),
         _node("Concat", ["p", "q"], ["c"], axis=1), _node("Relu", ["c"], ["r"]),
         _node("Tanh", ["p"], ["t"])],
        {"x": [1, 16]},
        [("x", 0, 0, 1, None), ("p", 64, 0, 4, "c"), ("q", 128, 1, 2, "c"),
         ("c", 64, 2, 3, None), ("r", 64, 3, 3, "c"), ("t", 256, 4, 4, None)],
        "alias-group", ("'r'", "'p'", "read at step 4"),
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", HAND_PLANS, ids=lambda case: case.name)
def test_hand_built_plan(
    case: HandPlan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _save_model(tmp_path / "hand.onnx", case.nodes, case.inputs)
    plan_path = _write(_hand_plan(model, case.placements), tmp_path / "plan.json")
    code = main(["check", str(model), str(plan_path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if case.rule is None:
        assert code == 0, err
        assert err == ""
        assert corrupted_reads(_hand_plan(model, case.placements)) == []
        return
    if case.rule == "alias-group":  # the independent replay sees the corruption too
        assert corrupted_reads(_hand_plan(model, case.placements))
    assert code == 1, err
    culprits = [line for line in err.splitlines() if f"[{case.rule}]" in line]
    assert any(all(name in line for name in case.culprits) for line in culprits), err
