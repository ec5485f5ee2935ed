"""The ``recompute`` rewrite: long-lived activations recomputed before late readers, proven by running it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from tierplan.compiler import PipelineError, compile_model
from tierplan.compiler.errors import PassFailure
from tierplan.compiler.execution import run_plan
from tierplan.compiler.ir import Operator
from tierplan.passes.recompute import Recompute, RecomputeReport, recomputable

from models.synthetic import random_dag
from tests.cli_checks import fails_cleanly

REST = "liveness,inplace,tiling,partition,tiers,pack,evaluate"


def _passes(options: str) -> str:
    return f"schedule,recompute{{{options}}},{REST}"


def _skip_model(path: Path, op_type: str = "Relu") -> Path:
    """``s = op(Conv(x))`` widens a small input, three Conv layers run, then ``y = Add(., s)``:
    keeping ``s`` costs more than keeping ``x`` and recomputing ``s`` from it."""
    rng = np.random.default_rng(0)
    shapes = {"w0": (8, 2, 3, 3), "w1": (16, 8, 3, 3), "w2": (16, 16, 3, 3), "w3": (8, 16, 3, 3)}
    weights = [
        numpy_helper.from_array((0.2 * rng.standard_normal(s)).astype(np.float32), name)
        for name, s in shapes.items()
    ]
    pads = {"pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["c0"], **pads),
        helper.make_node(op_type, ["c0"], ["s"]),
        helper.make_node("Conv", ["s", "w1"], ["m1"], **pads),
        helper.make_node("Sigmoid", ["m1"], ["m2"]),
        helper.make_node("Conv", ["m2", "w2"], ["m3"], **pads),
        helper.make_node("Tanh", ["m3"], ["m4"]),
        helper.make_node("Conv", ["m4", "w3"], ["m5"], **pads),
        helper.make_node("Add", ["m5", "s"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "skip",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 32, 32])],
        weights,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("engine", ["cpsat", "greedy"])
def test_skip_connection_recomputed_within_budget(tmp_path: Path, engine: str) -> None:
    model = _skip_model(tmp_path / "skip.onnx")
    passes = _passes(f"budget=0.9 engine={engine}")
    result = compile_model(model, passes=passes)
    report = result.context.result(Recompute)
    assert isinstance(report, RecomputeReport)
    evaluation = result.evaluation
    assert evaluation is not None
    assert sum(evaluation.activation_peak_bytes.values()) == report.after <= report.budget
    assert report.budget == int(0.9 * report.before) and report.recomputed == ("s",)
    clones = [op for op in result.ir.operators() if op.inserted]
    assert [op.op_type for op in clones] == ["Conv", "Relu"]  # from x: c0 is as large as s
    adder = next(op for op in result.ir.operators() if op.op_type == "Add")
    assert adder.inputs[1] == clones[-1].outputs[0]
    assert report.extra_flops == sum(
        r for r in (2 * 8 * 32 * 32 * 2 * 9, 8 * 32 * 32)
    )  # the Conv and the Relu again
    if engine == "cpsat":
        assert report.status == "OPTIMAL" and report.gap == 0.0
    run = run_plan(model, compile_options={"passes": passes})
    assert run.matches, run.divergence


def test_planned_model_runs_unchanged_in_onnxruntime(tmp_path: Path) -> None:
    import onnxruntime as ort

    model = _skip_model(tmp_path / "skip.onnx")
    result = compile_model(model, passes=_passes("budget=0.9"))
    _, planned = result.write(tmp_path / "out")
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 2, 32, 32)).astype(np.float32)}
    want = ort.InferenceSession(str(model)).run(None, feeds)[0]
    got = ort.InferenceSession(str(planned)).run(None, feeds)[0]
    assert len(onnx.load(planned).graph.node) == 10
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "op_type",
    [
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Bernoulli",
        "Multinomial",
        "Dropout",
        "If",
        "Loop",
        "Scan",
        "MyCustomOp",
    ],
)
def test_random_side_effect_and_unknown_operators_are_refused(op_type: str) -> None:
    assert not recomputable(Operator("op", op_type, inputs=["a"], outputs=["b"]))
    assert recomputable(Operator("op", "Relu", inputs=["a"], outputs=["b"]))


def test_refusals_of_domain_subgraph_and_several_outputs() -> None:
    assert not recomputable(Operator("op", "Relu", domain="com.x", inputs=["a"], outputs=["b"]))
    reads_outer = Operator("op", "Relu", inputs=["a"], outputs=["b"], implicit_inputs=["c"])
    assert not recomputable(reads_outer)
    assert not recomputable(Operator("op", "MaxPool", inputs=["a"], outputs=["b", "i"]))


def test_random_producer_is_never_recomputed(tmp_path: Path) -> None:
    model = _skip_model(tmp_path / "skip.onnx", op_type="RandomNormalLike")
    with pytest.raises(PassFailure, match="smallest activation peak reachable"):
        compile_model(model, passes=_passes("budget=0.9"))


def test_unreachable_budget_exits_1_without_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _skip_model(tmp_path / "skip.onnx")
    line = fails_cleanly(tmp_path, capsys, model, "--passes", _passes("budget=0.5"), code=1)
    assert "cannot: the smallest activation peak reachable by recomputation is" in line
    assert "(budget " in line and "operator 'Conv_4' alone reads and writes 131072 bytes" in line


def test_budget_in_bytes_and_bad_budgets(tmp_path: Path) -> None:
    model = _skip_model(tmp_path / "skip.onnx")
    report = compile_model(model, passes=_passes("budget=170KiB")).context.result(Recompute)
    assert report.budget == 170 * 1024 and report.after <= report.budget
    for bad in ("1.5", "lots", "0"):
        with pytest.raises(PipelineError):
            compile_model(model, passes=_passes(f"budget={bad}"))


def test_budget_already_met_changes_nothing(tmp_path: Path) -> None:
    model = _skip_model(tmp_path / "skip.onnx")
    result = compile_model(model, passes=_passes("budget=1.0"))
    assert not any(op.inserted for op in result.ir.operators())
    assert result.context.result(Recompute).engine == "none"


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    ops=st.integers(6, 30),
    ratio=st.sampled_from(["0.7", "0.85", "0.95"]),
    engine=st.sampled_from(["cpsat", "greedy"]),
)
def test_random_dags_give_valid_plans_that_run(
    tmp_path: Path, seed: int, ops: int, ratio: str, engine: str
) -> None:
    model = tmp_path / f"dag_{seed}_{ops}.onnx"
    onnx.save(random_dag(ops, seed, long_range_prob=0.3, shapes=((1, 8, 16, 16),)), model)
    passes = _passes(f"budget={ratio} engine={engine}")
    try:
        result = compile_model(model, passes=passes)
    except PassFailure as failure:
        assert "cannot: the smallest activation peak reachable by recomputation" in str(failure)
        return
    report = result.context.result(Recompute)
    assert report.after <= report.budget  # evaluate validated the plan itself
    run = run_plan(model, compile_options={"passes": passes})
    assert run.matches, run.divergence
