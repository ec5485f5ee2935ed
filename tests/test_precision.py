"""The ``precision`` rewrite: 16-bit activations, proven by running them against float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper
from tierplan.compiler import compile_model
from tierplan.compiler.cli import main
from tierplan.compiler.execution import run_plan
from tierplan.compiler.execution.compare import difference

from tests.conftest import MODELS

STACK = MODELS / "synthetic" / "transformer_stack_4.onnx"
REST = "schedule,liveness,inplace,tiling,partition,tiers,pack,evaluate"
HALF = f"precision,{REST}"


def _activation_peak(passes: str | None, model: Path = STACK) -> int:
    """The largest region's activation peak (L2 here: L1 holds tiles, DDR the graph IO)."""
    evaluation = compile_model(model, passes=passes).evaluation
    assert evaluation is not None
    return max(evaluation.activation_peak_bytes.values())


def test_sensitive_operators_stay_float32_and_the_rest_is_16_bit() -> None:
    ir = compile_model(STACK, passes=HALF).ir
    for op in ir.operators():
        types = {ir.tensor(name).dtype for name in [*op.inputs, *op.outputs] if name}
        if op.op_type in ("Softmax", "LayerNormalization"):
            assert types == {"float32"}, op.name
        elif op.op_type in ("MatMul", "Erf", "Transpose"):
            assert types == {"float16"} or types == {"float16", "int64"}, op.name


def test_graph_inputs_and_outputs_keep_their_types(tmp_path: Path) -> None:
    compile_model(STACK, passes=HALF).write(tmp_path)
    source = onnx.load(STACK, load_external_data=False).graph
    planned = onnx.load(tmp_path / "transformer_stack_4.planned.onnx", load_external_data=False)
    for before, after in (
        (source.input, planned.graph.input),
        (source.output, planned.graph.output),
    ):
        assert [(v.name, v.type.tensor_type.elem_type) for v in before] == [
            (v.name, v.type.tensor_type.elem_type) for v in after
        ]


def test_activation_peak_is_about_halved() -> None:
    assert _activation_peak(f"precision{{weights=float16}},{REST}") <= 0.55 * _activation_peak(None)
    # Keeping float32 weights costs their 16-bit copies, counted as activations.
    assert _activation_peak(HALF) < _activation_peak(None)


def test_run_compares_a_16_bit_plan_by_cosine() -> None:
    report = run_plan(STACK, compile_options={"passes": HALF})
    assert report.cosine == 0.999
    assert report.matches, report.divergence
    assert all(0.999 <= o.difference.cosine < 1.0 + 1e-9 for o in report.outputs)
    assert max(o.difference.max_abs for o in report.outputs) > 1e-5  # 16 bits, not float32


def test_cosine_floor_decides_float_matches() -> None:
    expected = np.linspace(-1, 1, 64, dtype=np.float32)
    close = expected + np.float32(0.01)
    assert not difference(close, expected, 1e-4, 1e-5).matches
    assert difference(close, expected, 1e-4, 1e-5, cosine_floor=0.999).matches
    assert not difference(-expected, expected, 1e-4, 1e-5, cosine_floor=0.999).matches
    nan = expected.copy()
    nan[3] = np.nan
    assert not difference(nan, expected, 1e-4, 1e-5, cosine_floor=0.0).matches


def _normalized_model(path: Path) -> Path:
    """A decomposed LayerNorm (eps 1e-12) feeding a MatMul, with an int mask cast to
    float, all weights inline so that onnxruntime runs the file itself."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "axes"),
        numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two"),
        numpy_helper.from_array(np.array(1e-12, dtype=np.float32), "eps"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 16).astype(np.float32), "gamma"),
        numpy_helper.from_array(rng.uniform(-1, 1, (16, 8)).astype(np.float32), "w"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["mean"]),
        helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("Pow", ["centred", "two"], ["squared"]),
        helper.make_node("ReduceMean", ["squared", "axes"], ["variance"]),
        helper.make_node("Add", ["variance", "eps"], ["shifted"]),
        helper.make_node("Sqrt", ["shifted"], ["deviation"]),
        helper.make_node("Div", ["centred", "deviation"], ["normal"]),
        helper.make_node("Mul", ["normal", "gamma"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "w"], ["projected"]),
        helper.make_node("Cast", ["mask"], ["mask_float"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["projected", "mask_float"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "normalized",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [6, 16]),
            helper.make_tensor_value_info("mask", TensorProto.INT64, [6, 8]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [6, 8])],
        initializer=weights,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def _inputs() -> dict[str, np.ndarray]:
    x = np.random.default_rng(1).uniform(-1, 1, (6, 16)).astype(np.float32)
    x[2] = 0.25  # a constant row: variance 0, so only float32 keeps eps (1e-12) from vanishing
    return {"x": x, "mask": np.ones((6, 8), dtype=np.int64)}


@pytest.mark.parametrize("weights", ["keep", "float16"])
def test_decomposed_normalization_stays_float32_and_onnxruntime_runs_the_rewrite(
    tmp_path: Path, weights: str
) -> None:
    model = _normalized_model(tmp_path / "normalized.onnx")
    passes = f"precision{{weights={weights}}},{REST}"
    result = compile_model(model, passes=passes)
    ir = result.ir
    for name in ("mean", "centred", "squared", "variance", "shifted", "deviation"):
        assert ir.tensor(name).dtype == "float32", name
    assert ir.tensor("projected").dtype == "float16"
    assert ir.tensor("mask_float").dtype == "float16"  # the Cast now writes float16 itself
    assert ir.producer("mask_float").attributes["to"] == TensorProto.FLOAT16
    report = run_plan(model, compile_options={"passes": passes}, inputs=_inputs())
    assert report.matches, report.divergence
    _, planned = result.write(tmp_path / "out")
    session = onnxruntime.InferenceSession(str(planned), providers=["CPUExecutionProvider"])
    reference = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    got, want = session.run(None, _inputs())[0], reference.run(None, _inputs())[0]
    assert np.isfinite(got).all() and difference(got, want, 0, 0, cosine_floor=0.999).matches
    initializers = {t.name: t.data_type for t in onnx.load(planned).graph.initializer}
    expected_w = TensorProto.FLOAT16 if weights == "float16" else TensorProto.FLOAT
    assert initializers["w"] == expected_w
    assert initializers["eps"] == TensorProto.FLOAT  # read only by a float32 operator


def test_keep_option_chooses_the_float32_operators() -> None:
    ir = compile_model(STACK, passes=f"precision{{keep=Softmax}},{REST}").ir
    norms = [op for op in ir.operators() if op.op_type == "LayerNormalization"]
    assert norms and all(ir.tensor(op.inputs[0]).dtype == "float16" for op in norms)
    softmaxes = [op for op in ir.operators() if op.op_type == "Softmax"]
    assert softmaxes and all(ir.tensor(op.inputs[0]).dtype == "float32" for op in softmaxes)
    loose = compile_model(STACK, passes=f"precision{{keep=none}},{REST}").ir
    assert all(
        loose.tensor(op.inputs[0]).dtype == "float16"
        for op in loose.operators()
        if op.op_type in ("Softmax", "LayerNormalization")
    )


def _scores_model(path: Path) -> Path:
    """Attention without projections: the [1, 4, 64, 64] scores are the largest values."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["x", "xt"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["probs", "x"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "scores",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 64, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 64, 8])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def test_large_kept_softmax_runs_in_chunks_with_its_casts(tmp_path: Path) -> None:
    model = _scores_model(tmp_path / "scores.onnx")
    chunked = compile_model(model, passes=f"precision{{chunks=4}},{REST}")
    assert sum(op.op_type == "Softmax" for op in chunked.ir.operators()) == 4  # along the heads
    whole = f"precision{{chunks=1}},{REST}"
    assert _activation_peak(f"precision{{chunks=4}},{REST}", model) < _activation_peak(whole, model)
    report = run_plan(model, compile_options={"passes": f"precision{{chunks=4}},{REST}"})
    assert report.matches, report.divergence


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("activations=float8", "expected 'float16' or 'bfloat16'"),
        ("activations=bfloat16", "no bfloat16 kernels"),
        ("weights=int8", "expected 'keep' or 'float16'"),
        ("keep=Softmax+", "expected operator types joined by '+'"),
        ("chunks=0", "expected int >= 1"),
    ],
)
def test_bad_options_are_one_clear_error(
    option: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "compile",
        str(STACK),
        "-o",
        str(tmp_path / "out"),
        "--passes",
        f"precision{{{option}}},{REST}",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tierplan: error: precision{") and message in err[0]
    assert not (tmp_path / "out").exists()


def test_cosine_option_sets_the_criterion_of_any_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(STACK), "--cosine", "0.9999"]) == 0
    assert "floats by cosine >= 0.9999" in capsys.readouterr().out
    assert main(["run", str(STACK), "--cosine", "2", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tierplan: error: --cosine 2.0: expected a similarity between -1 and 1"]
