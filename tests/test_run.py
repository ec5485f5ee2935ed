"""``tierplan run``: plans execute inside their arenas and compute what onnxruntime computes.

The models of models/ run on one device and on two; plans broken so that they
corrupt data (two live tensors sharing bytes, a lifetime ending before the last
read, an in-place write under a view still read later) fail, naming the operator
whose output went wrong.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from onnx import TensorProto, helper, numpy_helper
from tierplan.compiler import InputError, PassFailure, compile_model
from tierplan.compiler.cli import main
from tierplan.compiler.execution import run_plan
from tierplan.compiler.target import Target

from tests.conftest import MODELS, large_model_files, model_files
from tests.test_check import alias_hiding_overlap, lifetime_too_short, overlap
from tests.test_properties import random_models, targets

Plan = dict[str, Any]

TWO_DEVICES = "schedule,liveness,inplace,tiling,partition{devices=2},tiers,pack,evaluate"
SLOW_MODELS = {
    "densenet121", "gpt2", "bert_base", "resnet50", "randwire_ws", "googlenet", "vit_b_16",
    "whisper_tiny_encoder", "mobilenet_v2", "resnet18", "t5_encoder", "keras_mobilenet_v2", "unet_classic",
}  # fmt: skip


def _models(slow: bool) -> list[Any]:
    chosen = [p for p in model_files() if (p.stem in SLOW_MODELS) == slow]
    chosen += large_model_files() if slow else []
    return [
        pytest.param(path, id=path.stem, marks=[pytest.mark.slow] if slow else [])
        for path in chosen
    ]


@pytest.mark.parametrize("passes", [None, TWO_DEVICES], ids=["1-device", "2-devices"])
@pytest.mark.parametrize("model", _models(slow=False) + _models(slow=True))
def test_every_model_runs_in_its_plan(model: Path, passes: str | None) -> None:
    report = run_plan(model, compile_options={"passes": passes})
    assert report.matches, (report.divergence, report.outputs)
    assert report.outputs
    assert report.steps >= 1


@pytest.mark.parametrize(
    ("model", "dims"),
    [
        ("real/bert_base_dynamic.onnx", {"batch": 1, "seq": 16}),
        ("shape_arithmetic/paddle_style.onnx", {"N": 2}),
        ("shape_arithmetic/torchscript_style.onnx", {"batch": 2, "seq": 16}),
    ],
)
def test_models_with_symbolic_dimensions_run_with_the_plans_dims(
    model: str, dims: dict[str, int]
) -> None:
    plan = compile_model(MODELS / model, dims=dims).plan
    assert run_plan(MODELS / model, plan).matches  # the plan's dims bind the model


# -- plans that corrupt data ------------------------------------------------------------


def _aliased_view_model(path: Path) -> Path:
    """x -> a = Sigmoid(x); v = Identity(a); b = Neg(a); y = Sub(v, b).

    A plan may let Neg write ``b`` over ``a`` in place only if no member of ``a``'s
    alias group is read later; here the view ``v`` is read by Sub after Neg.
    """
    shape = [4, 64]
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["a"], name="sigmoid"),
        helper.make_node("Identity", ["a"], ["v"], name="view"),
        helper.make_node("Neg", ["a"], ["b"], name="neg"),
        helper.make_node("Sub", ["v", "b"], ["y"], name="sub"),
    ]
    graph = helper.make_graph(
        nodes,
        "aliased_view",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def _in_place_under_live_view(plan: Plan) -> None:
    """Put ``b`` (Neg's output) over ``a`` in place although the view ``v`` is read later."""
    buffers = {b["tensor"]: b for b in plan["buffers"]}
    a, b = buffers["a"], buffers["b"]
    assert (a["device"], a["tier"]) == (b["device"], b["tier"])
    b["offset"], b["alias_of"] = a["offset"], "a"


def test_in_place_write_under_a_live_view_fails_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _aliased_view_model(tmp_path / "aliased_view.onnx")
    result = compile_model(model, passes="schedule{order=onnx},liveness,inplace,pack,evaluate")
    plan = copy.deepcopy(result.plan)
    assert main(["run", str(model), str(_write(plan, tmp_path / "good.json")), "-q"]) == 0
    _in_place_under_live_view(plan)
    code = main(["run", str(model), str(_write(plan, tmp_path / "bad.json"))])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("tierplan: FAIL: ")
    assert "'sub'" in err and "'v'" in err and "'b'" in err, err
    assert len(err.splitlines()) == 1


DIAMOND = MODELS / "synthetic" / "diamond.onnx"


@pytest.mark.parametrize("breakage", [overlap, lifetime_too_short, alias_hiding_overlap])
def test_catalogue_breakages_that_corrupt_data_fail_run(breakage: Any) -> None:
    plan = copy.deepcopy(compile_model(DIAMOND, passes="schedule,liveness,pack,evaluate").plan)
    assert run_plan(DIAMOND, plan).matches
    _, names = breakage(plan)
    report = run_plan(DIAMOND, plan)
    assert not report.matches
    assert report.divergence is not None
    assert "first difference: operator" in report.divergence
    assert any(name in report.divergence for name in names), report.divergence


def test_lifetime_too_short_blames_poisoned_bytes() -> None:
    plan = copy.deepcopy(compile_model(DIAMOND, passes="schedule,liveness,pack,evaluate").plan)
    lifetime_too_short(plan)
    report = run_plan(DIAMOND, plan)
    assert report.divergence is not None and "poisoned" in report.divergence


# -- inputs, weights and bad input --------------------------------------------------------


def _write(plan: Plan, path: Path) -> Path:
    path.write_text(json.dumps(plan))
    return path


def test_inputs_from_npz_change_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = MODELS / "synthetic" / "chain.onnx"
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, input=np.full((1, 16, 32, 32), 0.25, dtype=np.float32))
    assert main(["run", str(model), "--inputs", str(inputs)]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out
    np.savez(inputs, input=np.zeros((2, 2), dtype=np.float32))
    assert main(["run", str(model), "--inputs", str(inputs)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tierplan: error: ") and "'input'" in err and "[1, 16, 32, 32]" in err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--inputs", "missing.npz"], "does not exist"),
        (["--rtol", "nan"], "--rtol"),
    ],
)
def test_bad_run_options(
    arguments: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(DIAMOND), *arguments])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("tierplan: error: ") and message in err
    assert len(err.splitlines()) == 1


def test_plan_of_another_model_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = compile_model(MODELS / "synthetic" / "chain.onnx").plan
    code = main(["run", str(DIAMOND), str(_write(plan, tmp_path / "plan.json"))])
    err = capsys.readouterr().err
    assert code == 2 and "another model" in err


def _model_with_stripped_integer_weight(path: Path) -> Path:
    """y = Gather(table, indices): both weights, the indices stripped to an absent file."""
    table = numpy_helper.from_array(np.ones((8, 4), dtype=np.float32), "table")
    indices = numpy_helper.from_array(np.arange(6, dtype=np.int64).reshape(2, 3), "indices")
    indices.ClearField("raw_data")
    indices.data_location = TensorProto.EXTERNAL
    indices.external_data.add(key="location", value="absent.weights")
    node = helper.make_node("Gather", ["table", "indices"], ["y"], name="gather")
    graph = helper.make_graph(
        [node],
        "stripped",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])],
        initializer=[table, indices],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_stripped_integer_weight_needs_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _model_with_stripped_integer_weight(tmp_path / "stripped.onnx")
    assert main(["run", str(model)]) == 2
    err = capsys.readouterr().err
    assert "'indices'" in err and "--inputs" in err
    given = tmp_path / "given.npz"
    np.savez(given, indices=np.array([[0, 7, 3], [1, 1, 2]], dtype=np.int64))
    assert main(["run", str(model), "--inputs", str(given), "-q"]) == 0


# -- random DAGs on random targets --------------------------------------------------------


@pytest.mark.slow
@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=random_models(), target=targets())
def test_random_dags_on_random_targets_run_in_their_plans(
    tmp_path: Path, model: onnx.ModelProto, target: Target
) -> None:
    path = tmp_path / "random.onnx"
    onnx.save(model, path)
    try:
        plan = compile_model(path, target=target).plan
    except PassFailure as error:
        assert "does not fit" in str(error)
        return
    report = run_plan(path, plan)
    assert report.matches, (report.divergence, report.outputs)


def test_a_reference_that_is_not_finite_proves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """log(x) of negative inputs is NaN in onnxruntime too: no vacuous PASS."""
    graph = helper.make_graph(
        [helper.make_node("Log", ["x"], ["y"])],
        "log",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    model = tmp_path / "log.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    inputs = tmp_path / "negative.npz"
    np.savez(inputs, x=-np.ones(4, dtype=np.float32))
    assert main(["run", str(model), "--inputs", str(inputs)]) == 2
    assert "not finite" in capsys.readouterr().err


def test_a_malformed_plan_is_bad_input() -> None:
    plan = copy.deepcopy(compile_model(DIAMOND).plan)
    plan["buffers"][0]["offset"] = "zero"
    with pytest.raises(InputError, match="malformed"):
        run_plan(DIAMOND, plan)
