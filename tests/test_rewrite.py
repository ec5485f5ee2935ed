"""Passes that rewrite the graph: the IR's editing helpers, and a rewrite proven by running it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper
from tierplan.compiler import IRGraph, ModelInfo, Operator, Tensor
from tierplan.compiler.cli import main
from tierplan.compiler.errors import InvariantError
from tierplan.compiler.execution import run_plan

from tests.conftest import MODELS

PLUGIN = Path(__file__).resolve().parent / "plugins" / "reciprocal_plugin.py"
REWRITE = "div-to-mul,schedule,liveness,inplace,tiling,tiers,pack,evaluate"


def _small_ir() -> IRGraph:
    ir = IRGraph(ModelInfo(path="m.onnx", sha256="0"))
    ir.add_tensor(Tensor("x", "float32", (4,), 16, "input"))
    ir.add_tensor(Tensor("y", "float32", (4,), 16, "activation"))
    ir.add_tensor(Tensor("z", "float32", (4,), 16, "output", graph_output=True))
    ir.add_operator(Operator("relu", "Relu", inputs=["x"], outputs=["y"], index=0))
    ir.add_operator(Operator("neg", "Neg", inputs=["y"], outputs=["z"], index=1))
    return ir


def test_unique_names_avoid_operators_and_tensors() -> None:
    ir = _small_ir()
    assert ir.unique_name("relu") == "relu_1"
    assert ir.unique_name("y") == "y_1"
    assert ir.unique_name("fresh") == "fresh"
    assert ir.add_value("y", "float32", (4,), 16).name == "y_1"


def test_insert_an_operator_between_two() -> None:
    ir = _small_ir()
    doubled = ir.add_value("y_doubled", "float32", (4,), 16)
    ir.replace_uses("y", doubled.name)
    ir.add_operator(Operator("double", "Add", inputs=["y", "y"], outputs=[doubled.name]))
    assert [op.name for op in ir.consumers("y")] == ["double"]
    assert ir.consumers(doubled.name)[0].inputs == [doubled.name]
    ir.verify()


def test_remove_an_operator_and_its_dead_output() -> None:
    ir = _small_ir()
    ir.replace_uses("y", "x")
    with pytest.raises(InvariantError, match="still written or read"):
        ir.remove_tensor("y")
    ir.remove_operator("relu")
    ir.remove_tensor("y")
    assert not ir.has_tensor("y") and not ir.has_operator("relu")
    assert ir.operator("neg").inputs == ["x"]
    ir.verify()


def test_clone_a_subgraph_reads_outer_values_and_renames_inner_ones() -> None:
    ir = _small_ir()
    renamed = ir.clone_operators(["relu", "neg"], "_copy")
    relu, neg = ir.operator(renamed["relu"]), ir.operator(renamed["neg"])
    assert relu.inputs == ["x"] and relu.outputs == [renamed["y"]]
    assert neg.inputs == [renamed["y"]] and neg.outputs == [renamed["z"]]
    assert relu.inserted and neg.inserted
    assert ir.tensor(renamed["z"]).kind == "activation"  # a copy is no graph output
    ir.verify()


def _division_model(path: Path) -> Path:
    """z = Relu(x / c) with the weight c inline, so onnxruntime can run the file itself."""
    c = numpy_helper.from_array(np.array([2.0, 4.0, 0.5, 8.0], dtype=np.float32), "c")
    nodes = [
        helper.make_node("Div", ["x", "c"], ["y"], name="div"),
        helper.make_node("Relu", ["y"], ["z"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "division",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [3, 4])],
        initializer=[c],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_rewriting_plugin_writes_a_runnable_rewritten_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _division_model(tmp_path / "division.onnx")
    out = tmp_path / "out"
    args = ["--plugin", str(PLUGIN), "--passes", REWRITE]
    assert main(["compile", str(model), "-o", str(out), "-q", *args]) == 0
    planned = onnx.load(out / "division.planned.onnx")
    assert [n.op_type for n in planned.graph.node] == ["Reciprocal", "Mul", "Relu"]
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    session = onnxruntime.InferenceSession(planned.SerializeToString())
    np.testing.assert_allclose(session.run(None, {"x": x})[0], np.maximum(x / [2, 4, 0.5, 8], 0))
    assert main(["run", str(model), str(out / "plan.json"), "-q"]) == 0
    assert "PASS" in capsys.readouterr().out


def test_run_compiles_and_proves_a_rewrite_of_a_real_graph() -> None:
    model = MODELS / "synthetic" / "transformer_stack_4.onnx"
    report = run_plan(model, compile_options={"plugins": [str(PLUGIN)], "passes": REWRITE})
    assert report.matches, report.divergence
    assert report.steps == 132 + 8  # a Reciprocal per division by a weight


def test_rewritten_plan_without_its_model_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _division_model(tmp_path / "division.onnx")
    out = tmp_path / "out"
    args = ["--plugin", str(PLUGIN), "--passes", REWRITE]
    assert main(["compile", str(model), "-o", str(out), "-q", *args]) == 0
    (out / "division.planned.onnx").unlink()
    assert main(["run", str(model), str(out / "plan.json")]) == 2
    assert "--planned-model" in capsys.readouterr().err
